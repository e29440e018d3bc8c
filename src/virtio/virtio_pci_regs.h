/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file virtio_pci_regs.h
 * @brief Register-level constants of virtio over PCI (virtio 1.2 §4.1, modern devices only)
 *        and of MSI-X (PCI Local Bus 3.0 §6.8.2), plus bulkhead's fixed BAR 0 layout.
 *
 * Everything here is what the guest's driver sees; the behaviour lives in
 * src/virtio/virtio_pci.c. Offsets of the common configuration structure are
 * byte offsets into it; all multi-byte fields are little-endian.
 */
#ifndef BULKHEAD_VIRTIO_VIRTIO_PCI_REGS_H
#define BULKHEAD_VIRTIO_VIRTIO_PCI_REGS_H

/** PCI vendor ID of every virtio device (Red Hat, Inc.; §4.1.2). */
#define VIRTIO_PCI_VENDOR_ID 0x1af4u
/** A modern (non-transitional) device's PCI device ID is this plus its virtio device ID. */
#define VIRTIO_PCI_DEVICE_ID_BASE 0x1040u
/** Revision ID: non-transitional devices report 1 or higher (§4.1.2.1). */
#define VIRTIO_PCI_REVISION 1u
/** Default PCI subsystem device ID: §4.1.2.1 asks non-transitional devices for 0x40 or more. */
#define VIRTIO_PCI_SUBSYS_ID_DEFAULT 0x40u

/** cfg_type of the capability locating the common configuration structure. */
#define VIRTIO_PCI_CAP_COMMON_CFG 1u
/** cfg_type of the capability locating the queue notification area. */
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2u
/** cfg_type of the capability locating the ISR status byte. */
#define VIRTIO_PCI_CAP_ISR_CFG 3u
/** cfg_type of the capability locating the device-specific configuration. */
#define VIRTIO_PCI_CAP_DEVICE_CFG 4u
/** cfg_type of the capability that is itself a window onto the BARs (for firmware). */
#define VIRTIO_PCI_CAP_PCI_CFG 5u

/** struct virtio_pci_cap: offset of cap_len (length of the whole capability). */
#define VIRTIO_PCI_CAP_LEN 2u
/** struct virtio_pci_cap: offset of cfg_type. */
#define VIRTIO_PCI_CAP_CFG_TYPE 3u
/** struct virtio_pci_cap: offset of bar (index of the BAR holding the structure). */
#define VIRTIO_PCI_CAP_BAR 4u
/** struct virtio_pci_cap: offset of id (tells apart several capabilities of one type). */
#define VIRTIO_PCI_CAP_ID 5u
/** struct virtio_pci_cap: offset of the le32 offset of the structure in its BAR. */
#define VIRTIO_PCI_CAP_OFFSET 8u
/** struct virtio_pci_cap: offset of the le32 length of the structure. */
#define VIRTIO_PCI_CAP_LENGTH 12u
/** Size of struct virtio_pci_cap (the generic part of every virtio capability). */
#define VIRTIO_PCI_CAP_SIZE 16u
/** struct virtio_pci_notify_cap: offset of the le32 notify_off_multiplier. */
#define VIRTIO_PCI_NOTIFY_CAP_MULT 16u
/** Size of struct virtio_pci_notify_cap. */
#define VIRTIO_PCI_NOTIFY_CAP_SIZE 20u
/** struct virtio_pci_cfg_cap: offset of the 4-byte pci_cfg_data window. */
#define VIRTIO_PCI_CFG_CAP_DATA 16u
/** Size of struct virtio_pci_cfg_cap. */
#define VIRTIO_PCI_CFG_CAP_SIZE 20u

/** Common cfg: le32 device_feature_select (which 32 bits device_feature shows). */
#define VIRTIO_PCI_COMMON_DFSELECT 0x00u
/** Common cfg: le32 device_feature (read-only window onto the offered features). */
#define VIRTIO_PCI_COMMON_DF 0x04u
/** Common cfg: le32 driver_feature_select. */
#define VIRTIO_PCI_COMMON_GFSELECT 0x08u
/** Common cfg: le32 driver_feature (window onto the accepted features). */
#define VIRTIO_PCI_COMMON_GF 0x0cu
/** Common cfg: le16 config_msix_vector. */
#define VIRTIO_PCI_COMMON_MSIX 0x10u
/** Common cfg: le16 num_queues (read-only). */
#define VIRTIO_PCI_COMMON_NUMQ 0x12u
/** Common cfg: u8 device_status. */
#define VIRTIO_PCI_COMMON_STATUS 0x14u
/** Common cfg: u8 config_generation (read-only). */
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15u
/** Common cfg: le16 queue_select (which queue the queue_* fields show). */
#define VIRTIO_PCI_COMMON_Q_SELECT 0x16u
/** Common cfg: le16 queue_size. */
#define VIRTIO_PCI_COMMON_Q_SIZE 0x18u
/** Common cfg: le16 queue_msix_vector. */
#define VIRTIO_PCI_COMMON_Q_MSIX 0x1au
/** Common cfg: le16 queue_enable. */
#define VIRTIO_PCI_COMMON_Q_ENABLE 0x1cu
/** Common cfg: le16 queue_notify_off (read-only). */
#define VIRTIO_PCI_COMMON_Q_NOFF 0x1eu
/** Common cfg: le64 queue_desc (descriptor table address). */
#define VIRTIO_PCI_COMMON_Q_DESCLO 0x20u
/** Common cfg: high half of queue_desc. */
#define VIRTIO_PCI_COMMON_Q_DESCHI 0x24u
/** Common cfg: le64 queue_driver (available ring address). */
#define VIRTIO_PCI_COMMON_Q_AVAILLO 0x28u
/** Common cfg: high half of queue_driver. */
#define VIRTIO_PCI_COMMON_Q_AVAILHI 0x2cu
/** Common cfg: le64 queue_device (used ring address). */
#define VIRTIO_PCI_COMMON_Q_USEDLO 0x30u
/** Common cfg: high half of queue_device. */
#define VIRTIO_PCI_COMMON_Q_USEDHI 0x34u
/**
 * Length of the common configuration structure as advertised. The virtio 1.2 fields
 * after it (queue_notif_config_data, queue_reset) exist only with features this
 * transport does not offer, so the 1.0 length is the honest one.
 */
#define VIRTIO_PCI_COMMON_CFG_LEN 0x38u

/** device_status: the guest OS has noticed the device. */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01u
/** device_status: the guest OS knows how to drive the device. */
#define VIRTIO_STATUS_DRIVER 0x02u
/** device_status: the driver is set up and ready to drive the device. */
#define VIRTIO_STATUS_DRIVER_OK 0x04u
/** device_status: feature negotiation is complete (the device may refuse to set it). */
#define VIRTIO_STATUS_FEATURES_OK 0x08u
/** device_status: set by the device when it has failed and needs a reset. */
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40u
/** device_status: the driver has given up on the device. */
#define VIRTIO_STATUS_FAILED 0x80u

/** ISR status bit: a used-buffer notification (set only while MSI-X is disabled). */
#define VIRTIO_PCI_ISR_QUEUE 0x01u
/** ISR status bit: a configuration change notification. */
#define VIRTIO_PCI_ISR_CONFIG 0x02u

/** Feature bit: the device is an SR-IOV physical function (not offered by this transport). */
#define VIRTIO_F_SR_IOV 37
/** Feature bit: doorbell writes carry ring positions (not offered by this transport). */
#define VIRTIO_F_NOTIFICATION_DATA 38
/** Feature bit: queue_notif_config_data replaces the queue index in doorbells (not offered). */
#define VIRTIO_F_NOTIF_CONFIG_DATA 39
/** Feature bit: queues can be reset one by one with queue_reset (not offered). */
#define VIRTIO_F_RING_RESET 40

/** Vector value meaning "no MSI-X vector" for config_msix_vector and queue_msix_vector. */
#define VIRTIO_MSI_NO_VECTOR 0xffffu

/** MSI-X capability: offset of the le16 Message Control register. */
#define PCI_MSIX_FLAGS 2u
/** Message Control: table size minus one. */
#define PCI_MSIX_FLAGS_QSIZE 0x07ffu
/** Message Control: every vector of the function is masked. */
#define PCI_MSIX_FLAGS_MASKALL 0x4000u
/** Message Control: MSI-X is enabled (INTx and MSI are not used). */
#define PCI_MSIX_FLAGS_ENABLE 0x8000u
/** MSI-X capability: offset of the le32 Table Offset / Table BIR register. */
#define PCI_MSIX_TABLE 4u
/** MSI-X capability: offset of the le32 PBA Offset / PBA BIR register. */
#define PCI_MSIX_PBA 8u
/** Low bits of the table and PBA offset registers that name the BAR (BIR). */
#define PCI_MSIX_BIR_MASK 0x7u
/** Length of the MSI-X capability. */
#define PCI_MSIX_CAP_SIZE 12u
/** Size of one MSI-X table entry. */
#define PCI_MSIX_ENTRY_SIZE 16u
/** Table entry: le32 Message Address (low; bits 1:0 are always zero). */
#define PCI_MSIX_ENTRY_ADDR_LO 0u
/** Table entry: le32 Message Upper Address. */
#define PCI_MSIX_ENTRY_ADDR_HI 4u
/** Table entry: le32 Message Data. */
#define PCI_MSIX_ENTRY_DATA 8u
/** Table entry: le32 Vector Control. */
#define PCI_MSIX_ENTRY_CTRL 12u
/** Vector Control: the vector is masked (set at reset). */
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 0x1u

/*
 * bulkhead's BAR 0. Every structure gets its own 4 KiB page, so the MSI-X table and PBA
 * never share a naturally aligned 4 KiB range with other registers (PCI 3.0 §6.8.2 asks
 * for that, because an OS may map them with different attributes), and the notification
 * page holds nothing but doorbells (ioeventfds cover exactly it).
 */

/** BAR index of the only BAR. */
#define VIRTIO_PCI_BAR 0u
/** Offset in BAR 0 of the common configuration structure. */
#define VIRTIO_PCI_BAR_COMMON 0x0000u
/** Offset in BAR 0 of the ISR status byte. */
#define VIRTIO_PCI_BAR_ISR 0x1000u
/** Offset in BAR 0 of the device-specific configuration. */
#define VIRTIO_PCI_BAR_DEVICE 0x2000u
/** Offset in BAR 0 of the notification area (queue q's doorbell at + 4 * q). */
#define VIRTIO_PCI_BAR_NOTIFY 0x3000u
/** Offset in BAR 0 of the MSI-X table. */
#define VIRTIO_PCI_BAR_MSIX_TABLE 0x4000u
/** Offset in BAR 0 of the MSI-X Pending Bit Array. */
#define VIRTIO_PCI_BAR_MSIX_PBA 0x5000u
/** Size of every region above (one page each). */
#define VIRTIO_PCI_BAR_REGION 0x1000u
/** Size of BAR 0: the six regions rounded up to a power of two. */
#define VIRTIO_PCI_BAR_SIZE 0x8000u
/** notify_off_multiplier: bytes between consecutive queues' doorbells. */
#define VIRTIO_PCI_NOTIFY_MULTIPLIER 4u
/** Width of the driver's doorbell write without VIRTIO_F_NOTIFICATION_DATA (le16 queue index). */
#define VIRTIO_PCI_NOTIFY_WIDTH 2u

/** Most queues one device may have: one doorbell each in the 4 KiB notification page. */
#define VIRTIO_PCI_MAX_QUEUES (VIRTIO_PCI_BAR_REGION / VIRTIO_PCI_NOTIFY_MULTIPLIER)
/** Most MSI-X vectors one device may have: the table fills at most its 4 KiB page. */
#define VIRTIO_PCI_MAX_VECTORS (VIRTIO_PCI_BAR_REGION / PCI_MSIX_ENTRY_SIZE)
/** Largest device-specific configuration: its 4 KiB page. */
#define VIRTIO_PCI_MAX_CONFIG VIRTIO_PCI_BAR_REGION

#endif
