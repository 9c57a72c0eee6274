// SPDX-License-Identifier: GPL-2.0
/*
 * iopmem: expose a PCIe BAR as a DAX block device (/dev/iopmemN) or a
 * p2pmem provider.
 *
 * The driver claims no PCI IDs: a device is handed to it with
 * driver_override and bind.  Per-device settings are written to the
 * driver's "config" attribute before binding:
 *
 *   echo "0000:03:00.0 mode=blockdax bar=2 cache=uc" \
 *       > /sys/bus/pci/drivers/iopmem/config
 *
 * Devices with no entry use the module parameters mode, bar and cache.
 * The sysfs files are described in native/kmod/ABI.
 */

#include <linux/module.h>
#include <linux/pci.h>
#include <linux/pci-p2pdma.h>
#include <linux/blkdev.h>
#include <linux/dax.h>
#include <linux/debugfs.h>
#include <linux/memremap.h>
#include <linux/pfn_t.h>
#include <linux/idr.h>
#include <linux/io.h>
#include <linux/highmem.h>
#include <linux/uio.h>
#include <linux/range.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/ctype.h>
#include <linux/mm.h>
#include <linux/utsname.h>
#ifdef CONFIG_X86
#include <asm/memtype.h>
#endif
#include "iopmem_compat.h"

#define DRV_NAME	"iopmem"
#define IOPMEM_ALIGN	SZ_2M
/*
 * Bounds on the driver-wide lists that user space can grow. Each list is shown
 * whole in one sysfs page: a config line is at most 53 bytes
 * ("ffffffff:ff:1f.7 mode=blockdax bar=-1 cache=wb force\n"), an error line at
 * most 16 + 1 + 160 + 1, so the bounds keep both under PAGE_SIZE.
 */
#define IOPMEM_MAX_CFGS	64
#define IOPMEM_MAX_ERRS	16
static_assert(IOPMEM_MAX_CFGS * 53 <= 4096);
static_assert(IOPMEM_MAX_ERRS * (16 + 1 + 160 + 1) <= 4096);
/* struct pages for a BAR may take at most 1/IOPMEM_MEMMAP_SHARE of RAM. */
#define IOPMEM_MEMMAP_SHARE	16

enum iopmem_mode { IOPMEM_BLOCKDAX, IOPMEM_P2PMEM };
enum iopmem_cache { IOPMEM_WB, IOPMEM_WC, IOPMEM_UC, IOPMEM_WT };

static const char * const mode_names[] = { "blockdax", "p2pmem" };
static const char * const cache_names[] = { "wb", "wc", "uc", "wt" };

static char *mode = "blockdax";
module_param(mode, charp, 0644);
MODULE_PARM_DESC(mode, "default mode: blockdax or p2pmem");
static int bar = -1;
module_param(bar, int, 0644);
MODULE_PARM_DESC(bar, "default BAR (0-5), -1 for the largest memory BAR");
static char *cache = "wb";
module_param(cache, charp, 0644);
MODULE_PARM_DESC(cache, "default blockdax cache mode: wb, wc, uc or wt");

/* "0000:03:00.0" up to "ffffffff:ff:1f.7" and its NUL */
#define IOPMEM_BDF_LEN	17

/* An entry of a driver-wide list kept per device, by its PCI name. */
struct iopmem_key {
	struct list_head list;
	char bdf[IOPMEM_BDF_LEN];
};

struct iopmem_cfg {
	struct iopmem_key key;
	int mode;
	int bar;
	int cache;
	bool force;
};

struct iopmem_err {
	struct iopmem_key key;
	char msg[160];
};

struct iopmem_dev {
	struct list_head list;
	struct pci_dev *pdev;
	int id;
	int mode;
	int bar;
	int cache;
	bool force;
	phys_addr_t phys;
	resource_size_t size;
	/* what the CPU mapping really is, for the memtype attribute */
	const char *memtype;
	/* blockdax */
	bool region;
	struct dev_pagemap pgmap;
	void *virt;		/* cache=wb: the ZONE_DEVICE direct map */
	void __iomem *io;	/* other cache modes: ioremap_{wc,uc,wt} */
	struct gendisk *disk;
	struct dax_device *dax_dev;
	bool write_cache;	/* dax_write_cache_enabled() after probe */
};

static DEFINE_MUTEX(iopmem_lock);
static LIST_HEAD(iopmem_cfgs);
static unsigned int iopmem_nr_cfgs;
static LIST_HEAD(iopmem_errs);
static unsigned int iopmem_nr_errs;
static LIST_HEAD(iopmem_devs);
static DEFINE_IDA(iopmem_ida);
/* debugfs fail_probe: the probe step to fail, "" for none */
static char fail_step[16];
static struct dentry *iopmem_debugfs;

static int lookup_name(const char * const *names, int n, const char *s)
{
	int i;

	for (i = 0; i < n; i++)
		if (sysfs_streq(s, names[i]))
			return i;
	return -EINVAL;
}

/* Called with iopmem_lock held. */
static struct iopmem_key *find_key(struct list_head *head, const char *bdf)
{
	struct iopmem_key *key;

	list_for_each_entry(key, head, list)
		if (!strcmp(key->bdf, bdf))
			return key;
	return NULL;
}

/* Called with iopmem_lock held; @key is the first member of what it frees. */
static void drop_key(struct iopmem_key *key, unsigned int *count)
{
	list_del(&key->list);
	(*count)--;
	kfree(key);
}

static void drop_all(struct list_head *head, unsigned int *count)
{
	struct iopmem_key *key, *next;

	list_for_each_entry_safe(key, next, head, list)
		drop_key(key, count);
}

/*
 * Record why a probe of @pdev failed, in the kernel log and in the driver's
 * last_error file (one line per device, the oldest dropped past a bound).
 */
static __printf(2, 3) void set_error(struct pci_dev *pdev, const char *fmt,
				     ...)
{
	struct iopmem_key *old;
	struct iopmem_err *fresh;
	char msg[160];
	va_list args;

	va_start(args, fmt);
	vsnprintf(msg, sizeof(msg), fmt, args);
	va_end(args);
	dev_err(&pdev->dev, "%s\n", msg);
	fresh = kzalloc(sizeof(*fresh), GFP_KERNEL);

	mutex_lock(&iopmem_lock);
	old = find_key(&iopmem_errs, pci_name(pdev));
	if (old)
		drop_key(old, &iopmem_nr_errs);
	if (fresh && iopmem_nr_errs >= IOPMEM_MAX_ERRS)
		drop_key(list_first_entry(&iopmem_errs, struct iopmem_key, list),
			 &iopmem_nr_errs);
	if (fresh) {
		strscpy(fresh->key.bdf, pci_name(pdev), sizeof(fresh->key.bdf));
		strscpy(fresh->msg, msg, sizeof(fresh->msg));
		list_add_tail(&fresh->key.list, &iopmem_errs);
		iopmem_nr_errs++;
	}
	mutex_unlock(&iopmem_lock);
}

static void clear_error(struct pci_dev *pdev)
{
	struct iopmem_key *old;

	mutex_lock(&iopmem_lock);
	old = find_key(&iopmem_errs, pci_name(pdev));
	if (old)
		drop_key(old, &iopmem_nr_errs);
	mutex_unlock(&iopmem_lock);
}

/*
 * Fault injection: writing a step name to debugfs iopmem/fail_probe makes
 * that step of every probe fail as if the kernel had refused it: enable,
 * region, memremap, ioremap, disk, dax, dax_host, add_disk (blockdax),
 * p2pdma (p2pmem).  The guest suite fails each in turn and checks that
 * nothing is left behind.
 */
static bool iopmem_inject(struct pci_dev *pdev, const char *step)
{
	bool hit;

	mutex_lock(&iopmem_lock);
	hit = fail_step[0] && !strcmp(fail_step, step);
	mutex_unlock(&iopmem_lock);
	if (hit)
		dev_warn(&pdev->dev, "fail_probe=%s: failing probe here\n", step);
	return hit;
}

static ssize_t fail_probe_read(struct file *file, char __user *ubuf,
			       size_t count, loff_t *ppos)
{
	char buf[sizeof(fail_step) + 1];
	int len;

	mutex_lock(&iopmem_lock);
	len = scnprintf(buf, sizeof(buf), "%s\n", fail_step);
	mutex_unlock(&iopmem_lock);
	return simple_read_from_buffer(ubuf, count, ppos, buf, len);
}

static ssize_t fail_probe_write(struct file *file, const char __user *ubuf,
				size_t count, loff_t *ppos)
{
	char buf[sizeof(fail_step)];
	char *step;

	if (*ppos || count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	step = strim(buf);
	mutex_lock(&iopmem_lock);
	strscpy(fail_step, step, sizeof(fail_step));
	mutex_unlock(&iopmem_lock);
	return count;
}

static const struct file_operations fail_probe_fops = {
	.owner	= THIS_MODULE,
	.read	= fail_probe_read,
	.write	= fail_probe_write,
	.llseek	= default_llseek,
};

/* Called with iopmem_lock held. */
static struct iopmem_cfg *find_cfg(const char *bdf)
{
	struct iopmem_key *key = find_key(&iopmem_cfgs, bdf);

	return key ? container_of(key, struct iopmem_cfg, key) : NULL;
}

/* Called with iopmem_lock held. */
static struct iopmem_dev *find_dev(struct pci_dev *pdev)
{
	struct iopmem_dev *idev;

	list_for_each_entry(idev, &iopmem_devs, list)
		if (idev->pdev == pdev)
			return idev;
	return NULL;
}

/* ---- claims ------------------------------------------------------------ */

/*
 * Claim the whole BAR busy and IORESOURCE_EXCLUSIVE, so that with
 * CONFIG_STRICT_DEVMEM (and without iomem=relaxed) neither /dev/mem nor the
 * sysfs resourceN files map it while iopmem serves it.
 */
static struct resource *iopmem_claim(struct iopmem_dev *idev)
{
	struct pci_dev *pdev = idev->pdev;
	struct resource *res;

	res = iopmem_inject(pdev, "region") ? NULL :
		request_mem_region_exclusive(idev->phys, idev->size, DRV_NAME);
	if (!res)
		set_error(pdev, "BAR %d is claimed by someone else (see /proc/iomem; an earlier iopmem binding whose block device is still open keeps it)",
			  idev->bar);
	return res;
}

static void iopmem_release_region(void *data)
{
	struct resource *res = data;

	release_mem_region(res->start, resource_size(res));
}

/*
 * memremap_pages() WARNs and fails on a range that still has a live
 * dev_pagemap.  The exclusive claim normally stops a second probe first;
 * this catches a pgmap that someone else left over the BAR.
 */
static bool iopmem_pgmap_busy(struct iopmem_dev *idev)
{
	unsigned long first = PHYS_PFN(idev->phys);
	unsigned long last = PHYS_PFN(idev->phys + idev->size - 1);
	struct dev_pagemap *pgmap = NULL;
	unsigned long pfn;

	/* memremap_pages() works in subsections: look at each of them. */
	for (pfn = first; pfn <= last && !pgmap;
	     pfn += PHYS_PFN(IOPMEM_ALIGN))
		pgmap = get_dev_pagemap(pfn, NULL);
	if (!pgmap)
		pgmap = get_dev_pagemap(last, NULL);
	if (!pgmap)
		return false;
	put_dev_pagemap(pgmap);
	set_error(idev->pdev, "BAR %d still has struct pages (a dev_pagemap) from an earlier binding: close what holds them first",
		  idev->bar);
	return true;
}

/* struct pages cost 1/64 of the memory they describe: cap that. */
static int iopmem_check_memmap(struct iopmem_dev *idev)
{
	u64 memmap = (u64)PHYS_PFN(idev->size) * sizeof(struct page);
	u64 ram = (u64)totalram_pages() << PAGE_SHIFT;

	if (memmap <= div_u64(ram, IOPMEM_MEMMAP_SHARE))
		return 0;
	set_error(idev->pdev, "BAR %d needs %llu MiB of struct pages, more than 1/%d of RAM (%llu MiB); use cache=wc/uc/wt (no struct pages)",
		  idev->bar, memmap >> 20, IOPMEM_MEMMAP_SHARE, ram >> 20);
	return -E2BIG;
}

/*
 * A BAR is not coherent with the CPU caches: a device or a peer writing it
 * does not snoop them.  So cache=wb is honest only where the platform makes
 * the write-back request uncached anyway (x86: PAT turns WB into UC- where
 * the MTRRs do not say WB), unless the user forced it.  Called after
 * memremap_pages() reserved the memory type.
 */
static int iopmem_check_coherent(struct iopmem_dev *idev)
{
	bool uncached = false;

#ifdef CONFIG_X86
	if (pat_enabled())
		uncached = pat_pfn_immune_to_uc_mtrr(PHYS_PFN(idev->phys));
#endif
	idev->memtype = uncached ? "uncached-minus" : "write-back";
	if (uncached || idev->force)
		return 0;
	set_error(idev->pdev, "cache=wb: BAR %d would really be cached write-back, which device and peer writes do not keep coherent; use cache=uc or wc, or add force",
		  idev->bar);
	return -EINVAL;
}

/* ---- blockdax ---------------------------------------------------------- */

static void iopmem_copy(struct iopmem_dev *idev, struct bio_vec *bv,
			phys_addr_t off, bool write)
{
	void *mem = bvec_kmap_local(bv);

	if (idev->io) {
		if (write)
			memcpy_toio(idev->io + off, mem, bv->bv_len);
		else
			memcpy_fromio(mem, idev->io + off, bv->bv_len);
	} else {
		if (write)
			memcpy_flushcache(idev->virt + off, mem, bv->bv_len);
		else
			memcpy(mem, idev->virt + off, bv->bv_len);
	}
	kunmap_local(mem);
}

/*
 * Only REQ_OP_READ and REQ_OP_WRITE get here: submit_bio_noacct() refuses
 * REQ_OP_FLUSH in a bio and discard/write-zeroes on a queue without limits
 * for them.  An empty REQ_PREFLUSH write has nothing left to do: every write
 * below is ordered and out of the CPU caches before its completion.
 */
static void iopmem_submit_bio(struct bio *bio)
{
	struct iopmem_dev *idev = bio->bi_bdev->bd_disk->private_data;
	bool write = op_is_write(bio_op(bio));
	struct bvec_iter iter;
	struct bio_vec bv;

	bio_for_each_segment(bv, bio, iter) {
		phys_addr_t off = (phys_addr_t)iter.bi_sector << SECTOR_SHIFT;

		if (off + bv.bv_len > idev->size) {
			bio->bi_status = BLK_STS_IOERR;
			break;
		}
		if (write)
			flush_dcache_page(bv.bv_page);
		iopmem_copy(idev, &bv, off, write);
		if (!write)
			flush_dcache_page(bv.bv_page);
	}
	if (write) {
		/* order the copies to the BAR before the completion */
		wmb();
	}
	bio_endio(bio);
}

static void iopmem_free_disk(struct gendisk *disk)
{
	struct iopmem_dev *idev = disk->private_data;

	/* Runs after the last reference to the disk, i.e. after umount. */
	if (idev->virt)
		memunmap_pages(&idev->pgmap);
	if (idev->io)
		iounmap(idev->io);
	if (idev->region)
		release_mem_region(idev->phys, idev->size);
	ida_free(&iopmem_ida, idev->id);
	pci_dev_put(idev->pdev);
	kfree(idev);
	/* Taken when the disk was added: rmmod waits for this. */
	module_put(THIS_MODULE);
}

static const struct block_device_operations iopmem_fops = {
	.owner		= THIS_MODULE,
	.submit_bio	= iopmem_submit_bio,
	.free_disk	= iopmem_free_disk,
};

static ssize_t write_cache_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	struct iopmem_dev *idev = dev_to_disk(dev)->private_data;

	return sysfs_emit(buf, "%d\n", idev->write_cache);
}
static DEVICE_ATTR_RO(write_cache);

static struct attribute *iopmem_dax_attrs[] = {
	&dev_attr_write_cache.attr,
	NULL,
};

static const struct attribute_group iopmem_dax_group = {
	.name	= "dax",
	.attrs	= iopmem_dax_attrs,
};

static const struct attribute_group *iopmem_dax_groups[] = {
	&iopmem_dax_group,
	NULL,
};

static long iopmem_dax_direct_access(struct dax_device *dax_dev,
				     pgoff_t pgoff, long nr_pages,
				     enum dax_access_mode mode, void **kaddr,
				     pfn_t *pfn)
{
	struct iopmem_dev *idev = dax_get_private(dax_dev);
	resource_size_t off = PFN_PHYS(pgoff);

	if (off >= idev->size)
		return -ERANGE;
	if (kaddr)
		*kaddr = idev->virt + off;
	if (pfn)
		*pfn = phys_to_pfn_t(idev->phys + off, PFN_DEV | PFN_MAP);
	return PHYS_PFN(idev->size - off);
}

static int iopmem_dax_zero_page_range(struct dax_device *dax_dev,
				      pgoff_t pgoff, size_t nr_pages)
{
	struct iopmem_dev *idev = dax_get_private(dax_dev);
	resource_size_t off = PFN_PHYS(pgoff);
	size_t len = PFN_PHYS(nr_pages);

	if (off + len > idev->size)
		return -ERANGE;
	for (; len; len -= PAGE_SIZE, off += PAGE_SIZE)
		memcpy_flushcache(idev->virt + off, page_address(ZERO_PAGE(0)),
				  PAGE_SIZE);
	return 0;
}

static const struct dax_operations iopmem_dax_ops = {
	.direct_access		= iopmem_dax_direct_access,
	.zero_page_range	= iopmem_dax_zero_page_range,
};

static int iopmem_blockdax_probe(struct iopmem_dev *idev)
{
	struct pci_dev *pdev = idev->pdev;
	int nid = dev_to_node(&pdev->dev);
	struct gendisk *disk;
	void *addr;
	int rc;

	if (idev->cache == IOPMEM_WB) {
		rc = iopmem_check_memmap(idev);
		if (rc)
			return rc;
	}
	if (!iopmem_claim(idev))
		return -EBUSY;
	idev->region = true;
	if (iopmem_pgmap_busy(idev)) {
		rc = -EBUSY;
		goto out_region;
	}

	if (idev->cache == IOPMEM_WB) {
		idev->pgmap.type = MEMORY_DEVICE_FS_DAX;
		idev->pgmap.range.start = idev->phys;
		idev->pgmap.range.end = idev->phys + idev->size - 1;
		idev->pgmap.nr_range = 1;
		idev->pgmap.owner = idev;
		if (iopmem_inject(pdev, "memremap"))
			addr = ERR_PTR(-ENOMEM);
		else
			addr = memremap_pages(&idev->pgmap, nid);
		if (IS_ERR(addr)) {
			rc = PTR_ERR(addr);
			set_error(pdev, "memremap_pages of BAR %d failed (%d)",
				  idev->bar, rc);
			goto out_region;
		}
		idev->virt = addr;
		rc = iopmem_check_coherent(idev);
		if (rc)
			goto out_unmap;
	} else {
		if (iopmem_inject(pdev, "ioremap"))
			idev->io = NULL;
		else if (idev->cache == IOPMEM_WC)
			idev->io = ioremap_wc(idev->phys, idev->size);
		else if (idev->cache == IOPMEM_WT)
			idev->io = ioremap_wt(idev->phys, idev->size);
		else
			idev->io = ioremap_uc(idev->phys, idev->size);
		if (!idev->io) {
			rc = -ENOMEM;
			set_error(pdev, "ioremap (%s) of BAR %d failed",
				  cache_names[idev->cache], idev->bar);
			goto out_region;
		}
		idev->memtype = idev->cache == IOPMEM_WC ? "write-combining" :
			idev->cache == IOPMEM_WT ? "write-through" : "uncached";
	}

	disk = iopmem_inject(pdev, "disk") ? ERR_PTR(-ENOMEM) :
		iopmem_alloc_disk(idev->cache == IOPMEM_WB, nid);
	if (IS_ERR(disk)) {
		rc = PTR_ERR(disk);
		set_error(pdev, "blk_alloc_disk failed (%d)", rc);
		goto out_unmap;
	}
	idev->disk = disk;
	disk->fops = &iopmem_fops;
	disk->private_data = idev;
	snprintf(disk->disk_name, DISK_NAME_LEN, DRV_NAME "%d", idev->id);
	set_capacity(disk, idev->size >> SECTOR_SHIFT);

	if (idev->virt) {
		struct dax_device *dax_dev;

		dax_dev = iopmem_inject(pdev, "dax") ? ERR_PTR(-ENOMEM) :
			alloc_dax(idev, &iopmem_dax_ops);
		if (IS_ERR(dax_dev)) {
			rc = PTR_ERR(dax_dev);
			set_error(pdev, "alloc_dax failed (%d)", rc);
			goto out_disk;
		}
		set_dax_nocache(dax_dev);
		set_dax_nomc(dax_dev);
		/*
		 * The direct map may cache the BAR: fsync/msync of a DAX file
		 * must write back the lines user stores dirtied.
		 */
		dax_write_cache(dax_dev, true);
		idev->write_cache = dax_write_cache_enabled(dax_dev);
		idev->dax_dev = dax_dev;
		rc = iopmem_inject(pdev, "dax_host") ? -ENOMEM :
			dax_add_host(dax_dev, disk);
		if (rc) {
			set_error(pdev, "dax_add_host failed (%d)", rc);
			goto out_dax;
		}
	}

	rc = iopmem_inject(pdev, "add_disk") ? -ENOMEM :
		device_add_disk(&pdev->dev, disk,
				idev->dax_dev ? iopmem_dax_groups : NULL);
	if (rc) {
		set_error(pdev, "device_add_disk failed (%d)", rc);
		goto out_host;
	}
	/*
	 * From here on iopmem_free_disk() owns idev.  It can run long after
	 * remove() (an open disk), so the module stays until it has run.
	 */
	__module_get(THIS_MODULE);
	return 0;

out_host:
	if (idev->dax_dev)
		dax_remove_host(disk);
out_dax:
	if (idev->dax_dev) {
		kill_dax(idev->dax_dev);
		put_dax(idev->dax_dev);
		idev->dax_dev = NULL;
	}
out_disk:
	put_disk(disk);
	idev->disk = NULL;
out_unmap:
	if (idev->virt)
		memunmap_pages(&idev->pgmap);
	idev->virt = NULL;
	if (idev->io)
		iounmap(idev->io);
	idev->io = NULL;
out_region:
	release_mem_region(idev->phys, idev->size);
	idev->region = false;
	return rc;
}

static void iopmem_blockdax_remove(struct iopmem_dev *idev)
{
	struct gendisk *disk = idev->disk;

	if (idev->dax_dev) {
		dax_remove_host(disk);
		kill_dax(idev->dax_dev);
		put_dax(idev->dax_dev);
	}
	del_gendisk(disk);
	/* The last put (maybe at umount) calls iopmem_free_disk(). */
	put_disk(disk);
}

/* ---- p2pmem ------------------------------------------------------------ */

static int iopmem_p2pmem_probe(struct iopmem_dev *idev)
{
	struct pci_dev *pdev = idev->pdev;
	struct resource *res;
	int rc;

	rc = iopmem_check_memmap(idev);
	if (rc)
		return rc;
	res = iopmem_claim(idev);
	if (!res)
		return -EBUSY;
	/* devres: released after the p2pdma pages, which come later */
	rc = devm_add_action_or_reset(&pdev->dev, iopmem_release_region, res);
	if (rc)
		return rc;
	if (iopmem_pgmap_busy(idev))
		return -EBUSY;
	rc = iopmem_inject(pdev, "p2pdma") ? -ENOMEM :
		pci_p2pdma_add_resource(pdev, idev->bar, idev->size, 0);
	if (rc) {
		set_error(pdev, "pci_p2pdma_add_resource failed for BAR %d (%d)",
			  idev->bar, rc);
		return rc;
	}
	/* P2PDMA maps its pages uncached (pgprot_noncached). */
	idev->memtype = "uncached-minus";
	/* The p2pdma pool and its pages are devres of the PCI device. */
	pci_p2pmem_publish(pdev, true);
	return 0;
}

/* ---- probe/remove ------------------------------------------------------ */

static int pick_bar(struct pci_dev *pdev)
{
	resource_size_t best = 0;
	int i, found = -1;

	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		if (!(pci_resource_flags(pdev, i) & IORESOURCE_MEM))
			continue;
		if (pci_resource_len(pdev, i) > best) {
			best = pci_resource_len(pdev, i);
			found = i;
		}
	}
	return found;
}

static int check_bar(struct pci_dev *pdev, int b, int cache)
{
	unsigned long flags;
	resource_size_t start, len;

	if (b < 0 || b >= PCI_STD_NUM_BARS) {
		set_error(pdev, "no usable BAR: bar=%d is not 0-5", b);
		return -EINVAL;
	}
	flags = pci_resource_flags(pdev, b);
	start = pci_resource_start(pdev, b);
	len = pci_resource_len(pdev, b);
	if (!len) {
		set_error(pdev, "BAR %d is not implemented", b);
		return -ENODEV;
	}
	if (flags & IORESOURCE_IO) {
		set_error(pdev, "BAR %d is an I/O port BAR, not memory", b);
		return -EINVAL;
	}
	if (!(flags & IORESOURCE_MEM) || (flags & IORESOURCE_UNSET)) {
		set_error(pdev, "BAR %d is not an assigned memory BAR", b);
		return -EINVAL;
	}
	if (len < IOPMEM_ALIGN) {
		set_error(pdev, "BAR %d is too small: %llu bytes, need at least 2 MiB",
			  b, (unsigned long long)len);
		return -ENOSPC;
	}
	if (!IS_ALIGNED(start, IOPMEM_ALIGN) || !IS_ALIGNED(len, IOPMEM_ALIGN)) {
		set_error(pdev, "BAR %d at %pa (%llu bytes) is not 2 MiB aligned, which memremap_pages needs",
			  b, &start, (unsigned long long)len);
		return -EINVAL;
	}
	/* WB, WT and WC read speculatively and merge: no side effects allowed. */
	if (cache != IOPMEM_UC && !(flags & IORESOURCE_PREFETCH)) {
		set_error(pdev, "BAR %d is not prefetchable: cache=%s may read ahead and merge, only cache=uc is safe on it",
			  b, cache_names[cache]);
		return -EINVAL;
	}
	return 0;
}

static void iopmem_disable(void *data)
{
	pci_disable_device(data);
}

static int iopmem_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct iopmem_dev *idev;
	struct iopmem_cfg *cfg;
	char pmode[16], pcache[8];
	int rc;

	idev = kzalloc(sizeof(*idev), GFP_KERNEL);
	if (!idev)
		return -ENOMEM;
	idev->pdev = pdev;

	mutex_lock(&iopmem_lock);
	cfg = find_cfg(pci_name(pdev));
	if (cfg) {
		idev->mode = cfg->mode;
		idev->bar = cfg->bar;
		idev->cache = cfg->cache;
		idev->force = cfg->force;
	} else {
		/* The parameters are writable: read them under their lock. */
		kernel_param_lock(THIS_MODULE);
		strscpy(pmode, mode ?: "", sizeof(pmode));
		strscpy(pcache, cache ?: "", sizeof(pcache));
		idev->bar = bar;
		kernel_param_unlock(THIS_MODULE);
		/* A value written through sysfs keeps its newline. */
		strim(pmode);
		strim(pcache);
		idev->mode = lookup_name(mode_names, ARRAY_SIZE(mode_names),
					 pmode);
		idev->cache = lookup_name(cache_names, ARRAY_SIZE(cache_names),
					  pcache);
	}
	mutex_unlock(&iopmem_lock);

	rc = -EINVAL;
	if (idev->mode < 0) {
		set_error(pdev, "bad mode parameter '%s'", pmode);
		goto out_free;
	}
	if (idev->cache < 0) {
		set_error(pdev, "bad cache parameter '%s'", pcache);
		goto out_free;
	}
	if (idev->mode == IOPMEM_P2PMEM && !IOPMEM_HAVE_P2PDMA) {
		set_error(pdev, "mode=p2pmem needs a kernel with CONFIG_PCI_P2PDMA, and this one (%s) has none; use mode=blockdax",
			  init_utsname()->release);
		rc = -EOPNOTSUPP;
		goto out_free;
	}
	if (idev->mode != IOPMEM_BLOCKDAX && idev->cache != IOPMEM_WB) {
		set_error(pdev, "cache=%s is only for blockdax: %s keeps the kernel's mapping",
			  cache_names[idev->cache], mode_names[idev->mode]);
		goto out_free;
	}
	if (idev->cache == IOPMEM_WT && !idev->force) {
		set_error(pdev, "cache=wt caches reads, which device and peer writes do not keep coherent; use cache=uc or wc, or add force");
		goto out_free;
	}
	if (idev->bar < 0)
		idev->bar = pick_bar(pdev);
	/* p2pmem maps uncached: it needs no prefetchable BAR. */
	rc = check_bar(pdev, idev->bar,
		       idev->mode == IOPMEM_P2PMEM ? IOPMEM_UC : idev->cache);
	if (rc)
		goto out_free;
	idev->phys = pci_resource_start(pdev, idev->bar);
	idev->size = pci_resource_len(pdev, idev->bar);

	rc = ida_alloc(&iopmem_ida, GFP_KERNEL);
	if (rc < 0)
		goto out_free;
	idev->id = rc;

	rc = iopmem_inject(pdev, "enable") ? -EIO :
		pci_enable_device_mem(pdev);
	if (rc) {
		set_error(pdev, "cannot enable the device (%d)", rc);
		goto out_ida;
	}
	/*
	 * devres: disabled after the p2pmem devres are gone.  No bus
	 * mastering: iopmem never makes the device issue DMA.
	 */
	rc = devm_add_action_or_reset(&pdev->dev, iopmem_disable, pdev);
	if (rc)
		goto out_ida;

	pci_dev_get(pdev);
	if (idev->mode == IOPMEM_BLOCKDAX)
		rc = iopmem_blockdax_probe(idev);
	else
		rc = iopmem_p2pmem_probe(idev);
	if (rc) {
		pci_dev_put(pdev);
		goto out_ida;
	}

	mutex_lock(&iopmem_lock);
	list_add_tail(&idev->list, &iopmem_devs);
	mutex_unlock(&iopmem_lock);
	clear_error(pdev);
	dev_info(&pdev->dev, "%s over BAR %d (%pa, %llu MiB, cache %s, %s)\n",
		 mode_names[idev->mode], idev->bar, &idev->phys,
		 (unsigned long long)(idev->size >> 20),
		 cache_names[idev->cache], idev->memtype);
	return 0;

out_ida:
	ida_free(&iopmem_ida, idev->id);
out_free:
	kfree(idev);
	return rc;
}

static void iopmem_remove(struct pci_dev *pdev)
{
	struct iopmem_dev *idev;

	mutex_lock(&iopmem_lock);
	idev = find_dev(pdev);
	if (idev)
		list_del(&idev->list);
	mutex_unlock(&iopmem_lock);
	if (!idev)
		return;

	if (idev->mode == IOPMEM_BLOCKDAX) {
		iopmem_blockdax_remove(idev);
		return;
	}
	/* p2pmem: the pages, then the region, go with the devres. */
	ida_free(&iopmem_ida, idev->id);
	pci_dev_put(pdev);
	kfree(idev);
}

/* ---- sysfs ------------------------------------------------------------- */

enum iopmem_field { F_MODE, F_BAR, F_CACHE, F_NODE, F_PHYS, F_SIZE, F_MEMTYPE };

static ssize_t iopmem_show(struct device *dev, char *buf, int what)
{
	struct pci_dev *pdev = to_pci_dev(dev);
	struct iopmem_dev *idev;
	ssize_t len = -ENODEV;

	mutex_lock(&iopmem_lock);
	idev = find_dev(pdev);
	if (!idev)
		goto out;
	switch (what) {
	case F_MODE:
		len = sysfs_emit(buf, "%s\n", mode_names[idev->mode]);
		break;
	case F_BAR:
		len = sysfs_emit(buf, "%d\n", idev->bar);
		break;
	case F_CACHE:
		len = sysfs_emit(buf, "%s\n", cache_names[idev->cache]);
		break;
	case F_NODE:
		len = sysfs_emit(buf, "%s\n", idev->mode == IOPMEM_BLOCKDAX ?
				 idev->disk->disk_name : "p2pmem");
		break;
	case F_PHYS:
		len = sysfs_emit(buf, "%pa\n", &idev->phys);
		break;
	case F_SIZE:
		len = sysfs_emit(buf, "%llu\n", (unsigned long long)idev->size);
		break;
	default:
		len = sysfs_emit(buf, "%s\n", idev->memtype);
		break;
	}
out:
	mutex_unlock(&iopmem_lock);
	return len;
}

#define IOPMEM_ATTR(_name, _what)					\
static ssize_t _name##_show(struct device *dev,				\
			    struct device_attribute *attr, char *buf)	\
{									\
	return iopmem_show(dev, buf, _what);				\
}									\
static DEVICE_ATTR_RO(_name)

IOPMEM_ATTR(mode, F_MODE);
IOPMEM_ATTR(bar, F_BAR);
IOPMEM_ATTR(cache, F_CACHE);
IOPMEM_ATTR(node, F_NODE);
IOPMEM_ATTR(phys, F_PHYS);
IOPMEM_ATTR(size, F_SIZE);
IOPMEM_ATTR(memtype, F_MEMTYPE);

static struct attribute *iopmem_dev_attrs[] = {
	&dev_attr_mode.attr,
	&dev_attr_bar.attr,
	&dev_attr_cache.attr,
	&dev_attr_node.attr,
	&dev_attr_phys.attr,
	&dev_attr_size.attr,
	&dev_attr_memtype.attr,
	NULL,
};

static const struct attribute_group iopmem_dev_group = {
	.name = DRV_NAME,
	.attrs = iopmem_dev_attrs,
};

static const struct attribute_group *iopmem_dev_groups[] = {
	&iopmem_dev_group,
	NULL,
};

static ssize_t config_show(struct device_driver *drv, char *buf)
{
	struct iopmem_cfg *cfg;
	ssize_t len = 0;

	mutex_lock(&iopmem_lock);
	list_for_each_entry(cfg, &iopmem_cfgs, key.list)
		len += sysfs_emit_at(buf, len, "%s mode=%s bar=%d cache=%s%s\n",
				     cfg->key.bdf, mode_names[cfg->mode], cfg->bar,
				     cache_names[cfg->cache],
				     cfg->force ? " force" : "");
	mutex_unlock(&iopmem_lock);
	return len;
}

/* Exactly @n lowercase or uppercase hex digits, no sign, no 0x. */
static bool parse_hex(const char *s, size_t n, unsigned int *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!isxdigit(s[i]))
			return false;
	*out = 0;
	for (i = 0; i < n; i++)
		*out = (*out << 4) | hex_to_bin(s[i]);
	return true;
}

/*
 * "DDDD:BB:DD.F" with a 4 to 8 digit domain (domains are 32-bit), as
 * pci_name() prints it; nothing before or after.
 */
static int parse_bdf(const char *s, char *bdf)
{
	unsigned int dom, bus, dev, fn;
	size_t len = strlen(s), dlen;

	if (len < 12 || len > IOPMEM_BDF_LEN - 1)
		return -EINVAL;
	dlen = len - 8;
	if (!parse_hex(s, dlen, &dom) || s[dlen] != ':' ||
	    !parse_hex(s + dlen + 1, 2, &bus) || s[dlen + 3] != ':' ||
	    !parse_hex(s + dlen + 4, 2, &dev) || s[dlen + 6] != '.' ||
	    !parse_hex(s + dlen + 7, 1, &fn) || dev > 0x1f || fn > 7)
		return -EINVAL;
	snprintf(bdf, IOPMEM_BDF_LEN, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
	return 0;
}

/*
 * "BDF [mode=M] [bar=N] [cache=C] [force]" sets, "BDF" alone forgets an
 * entry.  Each key at most once; anything else is refused whole.
 */
static ssize_t config_store(struct device_driver *drv, const char *buf,
			    size_t count)
{
	struct iopmem_cfg tmp = { }, *cfg;
	bool seen_mode = false, seen_bar = false, seen_cache = false;
	char *copy, *p, *tok;
	bool forget = true;
	int rc = -EINVAL;

	if (count > 128)
		return -EINVAL;
	copy = kstrndup(buf, count, GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	if (strlen(copy) != count)	/* an embedded NUL */
		goto out;
	p = strim(copy);
	tok = strsep(&p, " \t");
	if (!tok || parse_bdf(tok, tmp.key.bdf))
		goto out;
	tmp.mode = IOPMEM_BLOCKDAX;
	tmp.bar = -1;
	tmp.cache = IOPMEM_WB;
	while ((tok = strsep(&p, " \t"))) {
		if (!*tok)
			continue;
		forget = false;
		if (!strncmp(tok, "mode=", 5) && !seen_mode) {
			seen_mode = true;
			tmp.mode = lookup_name(mode_names,
					       ARRAY_SIZE(mode_names), tok + 5);
			if (tmp.mode < 0)
				goto out;
		} else if (!strncmp(tok, "cache=", 6) && !seen_cache) {
			seen_cache = true;
			tmp.cache = lookup_name(cache_names,
						ARRAY_SIZE(cache_names),
						tok + 6);
			if (tmp.cache < 0)
				goto out;
		} else if (!strncmp(tok, "bar=", 4) && !seen_bar) {
			seen_bar = true;
			if (!strcmp(tok + 4, "-1"))
				tmp.bar = -1;
			else if (tok[4] >= '0' && tok[4] <= '5' && !tok[5])
				tmp.bar = tok[4] - '0';
			else
				goto out;
		} else if (!strcmp(tok, "force") && !tmp.force) {
			tmp.force = true;
		} else {
			goto out;
		}
	}

	mutex_lock(&iopmem_lock);
	cfg = find_cfg(tmp.key.bdf);
	if (forget) {
		if (cfg)
			drop_key(&cfg->key, &iopmem_nr_cfgs);
	} else {
		if (!cfg) {
			if (iopmem_nr_cfgs >= IOPMEM_MAX_CFGS) {
				mutex_unlock(&iopmem_lock);
				rc = -ENOSPC;
				goto out;
			}
			cfg = kzalloc(sizeof(*cfg), GFP_KERNEL);
			if (!cfg) {
				mutex_unlock(&iopmem_lock);
				rc = -ENOMEM;
				goto out;
			}
			list_add_tail(&cfg->key.list, &iopmem_cfgs);
			iopmem_nr_cfgs++;
		}
		strscpy(cfg->key.bdf, tmp.key.bdf, sizeof(cfg->key.bdf));
		cfg->mode = tmp.mode;
		cfg->bar = tmp.bar;
		cfg->cache = tmp.cache;
		cfg->force = tmp.force;
	}
	mutex_unlock(&iopmem_lock);
	rc = count;
out:
	kfree(copy);
	return rc;
}
static DRIVER_ATTR_RW(config);

static ssize_t last_error_show(struct device_driver *drv, char *buf)
{
	struct iopmem_err *err;
	ssize_t len = 0;

	mutex_lock(&iopmem_lock);
	list_for_each_entry(err, &iopmem_errs, key.list)
		len += sysfs_emit_at(buf, len, "%s %s\n", err->key.bdf,
				     err->msg);
	mutex_unlock(&iopmem_lock);
	return len;
}
static DRIVER_ATTR_RO(last_error);

static struct attribute *iopmem_drv_attrs[] = {
	&driver_attr_config.attr,
	&driver_attr_last_error.attr,
	NULL,
};
ATTRIBUTE_GROUPS(iopmem_drv);

/* No id_table: the driver binds only through driver_override. */
static struct pci_driver iopmem_driver = {
	.name		= DRV_NAME,
	.probe		= iopmem_probe,
	.remove		= iopmem_remove,
	.groups		= iopmem_drv_groups,
	.dev_groups	= iopmem_dev_groups,
};

static int __init iopmem_init(void)
{
	int rc;

	iopmem_debugfs = debugfs_create_dir(DRV_NAME, NULL);
	debugfs_create_file("fail_probe", 0600, iopmem_debugfs, NULL,
			    &fail_probe_fops);
	rc = pci_register_driver(&iopmem_driver);
	if (rc)
		debugfs_remove_recursive(iopmem_debugfs);
	return rc;
}

static void __exit iopmem_exit(void)
{
	pci_unregister_driver(&iopmem_driver);
	debugfs_remove_recursive(iopmem_debugfs);
	drop_all(&iopmem_cfgs, &iopmem_nr_cfgs);
	drop_all(&iopmem_errs, &iopmem_nr_errs);
	ida_destroy(&iopmem_ida);
}

module_init(iopmem_init);
module_exit(iopmem_exit);

MODULE_DESCRIPTION("PCIe BAR as a DAX block device or p2pmem");
MODULE_AUTHOR("iopmem contributors");
MODULE_LICENSE("GPL");
MODULE_VERSION("0.1.0");
