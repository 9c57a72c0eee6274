/* SPDX-License-Identifier: GPL-2.0 */
/*
 * iopmem_compat.h: every difference between the kernels iopmem builds for,
 * keyed on LINUX_VERSION_CODE and the kernel's config, in one place.
 *
 * Built and tested against Debian 12's 6.1 and 6.12 and the project's own
 * 6.12 (scripts/build-kmod.sh builds all three).  6.2 to 6.8 take the 6.1
 * path; 6.9 and 6.10, which no distribution ships, are refused.
 */
#ifndef IOPMEM_COMPAT_H
#define IOPMEM_COMPAT_H

#include <linux/version.h>
#include <linux/blkdev.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0)
#error "iopmem needs Linux 6.1 or newer"
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0) && \
	LINUX_VERSION_CODE < KERNEL_VERSION(6, 11, 0)
#error "iopmem supports Linux 6.1 to 6.8 and 6.11 or newer, not 6.9 or 6.10"
#endif

/*
 * p2pmem needs the kernel's P2PDMA core.  Without CONFIG_PCI_P2PDMA (Debian's
 * kernels) the module still builds, and a probe for p2pmem is refused with
 * the reason in last_error.
 */
#define IOPMEM_HAVE_P2PDMA	IS_ENABLED(CONFIG_PCI_P2PDMA)

/*
 * A bio-based disk of 512-byte logical and page-sized physical blocks, a
 * volatile write cache, DAX when @dax.  An ERR_PTR on failure.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
static inline struct gendisk *iopmem_alloc_disk(bool dax, int nid)
{
	struct queue_limits lim = {
		.logical_block_size	= 512,
		.physical_block_size	= PAGE_SIZE,
		.max_hw_sectors		= UINT_MAX,
		.features		= BLK_FEAT_WRITE_CACHE |
					  BLK_FEAT_SYNCHRONOUS,
	};

	if (dax)
		lim.features |= BLK_FEAT_DAX;
	return blk_alloc_disk(&lim, nid);
}
#else
static inline struct gendisk *iopmem_alloc_disk(bool dax, int nid)
{
	struct gendisk *disk = blk_alloc_disk(nid);
	struct request_queue *q;

	if (!disk)
		return ERR_PTR(-ENOMEM);
	q = disk->queue;
	blk_queue_logical_block_size(q, 512);
	blk_queue_physical_block_size(q, PAGE_SIZE);
	blk_queue_max_hw_sectors(q, UINT_MAX);
	blk_queue_write_cache(q, true, false);
	if (dax)
		blk_queue_flag_set(QUEUE_FLAG_DAX, q);
	return disk;
}
#endif

#endif /* IOPMEM_COMPAT_H */
