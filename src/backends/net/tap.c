/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/net/tap.h"

#include "backends/net/virtio_net.h"
#include "core/log.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int tap_open(const char *ifname, int *fd)
{
    struct ifreq ifr;
    if (strlen(ifname) >= sizeof(ifr.ifr_name) || ifname[0] == '\0')
        return -ENAMETOOLONG;
    int t = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (t < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, ifname, strlen(ifname));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    int hdr_size = (int)VIRTIO_NET_HDR_LEN;
    int le = 1;
    unsigned offload = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    int r = 0;
    if (ioctl(t, TUNSETIFF, &ifr) < 0 || ioctl(t, TUNSETVNETHDRSZ, &hdr_size) < 0)
        r = -errno;
    /* The header is little-endian (VERSION_1). A little-endian host is that already, and
     * a kernel without cross-endian support refuses the request, which is then harmless. */
    if (r == 0 && ioctl(t, TUNSETVNETLE, &le) < 0 && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
        r = -errno;
    if (r == 0 && ioctl(t, TUNSETOFFLOAD, (unsigned long)offload) < 0)
        r = -errno;
    if (r < 0) {
        close(t);
        return r;
    }
    log_debug("net: tap %s open, offloads 0x%x", ifname, offload);
    *fd = t;
    return 0;
}
