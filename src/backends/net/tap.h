/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file tap.h
 * @brief Opening a Linux tap interface as bulkhead-net's uplink to the host.
 *
 * The tap is opened the way the switch wants every packet: Ethernet frames without
 * the packet-information prefix, each behind the 12-byte virtio-net header (version 1
 * layout, little-endian), with checksum and TCP segmentation offloads on in both
 * directions, so a guest's 64 KiB TSO send reaches the host stack as one packet and
 * the host's large packets come out as one. Reads and writes never block.
 */
#ifndef BULKHEAD_BACKENDS_NET_TAP_H
#define BULKHEAD_BACKENDS_NET_TAP_H

/**
 * Open (attach to, or create when allowed) the tap interface @p ifname: IFF_TAP |
 * IFF_NO_PI | IFF_VNET_HDR, TUNSETVNETHDRSZ 12, little-endian headers, TUNSETOFFLOAD
 * CSUM | TSO4 | TSO6 | TSO_ECN; non-blocking, close-on-exec. Bringing the interface up
 * and addressing it is the administrator's business.
 * @param ifname the interface name (shorter than IFNAMSIZ).
 * @param fd receives the descriptor.
 * @return 0; -ENAMETOOLONG; or the negative errno of the open or ioctl that failed
 *         (-EPERM: the interface does not exist and we may not create it, or it
 *         belongs to someone else).
 */
int tap_open(const char *ifname, int *fd);

#endif
