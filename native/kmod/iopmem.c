// SPDX-License-Identifier: GPL-2.0
/*
 * iopmem: expose a PCIe BAR as a DAX block device (/dev/iopmemN), a
 * device-dax instance (/dev/daxX.Y) or a p2pmem provider.
 *
 * The driver claims no PCI IDs: a device is handed to it with
 * driver_override and bind.  Per-device settings are written to the
 * driver's "config" attribute before binding:
 *
 *   echo "0000:03:00.0 mode=blockdax bar=2 cache=wb" \
 *       > /sys/bus/pci/drivers/iopmem/config
 *
 * Devices with no entry use the module parameters mode, bar and cache.
 */

#include <linux/module.h>
#include <linux/pci.h>
#include <linux/pci-p2pdma.h>
#include <linux/blkdev.h>
#include <linux/dax.h>
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

#define DRV_NAME	"iopmem"
#define IOPMEM_ALIGN	SZ_2M
#define IOPMEM_DAX_REGION_BASE	64

/* Mirrors drivers/dax/bus.h, which is not installed for modules. */
struct dax_region;
struct dev_dax;
struct dax_region *alloc_dax_region(struct device *parent, int region_id,
				    struct range *range, int target_node,
				    unsigned int align, unsigned long flags);
struct dev_dax_data {
	struct dax_region *dax_region;
	struct dev_pagemap *pgmap;
	resource_size_t size;
	int id;
	bool memmap_on_memory;
};
struct dev_dax *devm_create_dev_dax(struct dev_dax_data *data);

enum iopmem_mode { IOPMEM_BLOCKDAX, IOPMEM_DEVDAX, IOPMEM_P2PMEM };
enum iopmem_cache { IOPMEM_WB, IOPMEM_WC, IOPMEM_UC, IOPMEM_WT };

static const char * const mode_names[] = { "blockdax", "devdax", "p2pmem" };
static const char * const cache_names[] = { "wb", "wc", "uc", "wt" };

static char *mode = "blockdax";
module_param(mode, charp, 0644);
MODULE_PARM_DESC(mode, "default mode: blockdax, devdax or p2pmem");
static int bar = -1;
module_param(bar, int, 0644);
MODULE_PARM_DESC(bar, "default BAR (0-5), -1 for the largest memory BAR");
static char *cache = "wb";
module_param(cache, charp, 0644);
MODULE_PARM_DESC(cache, "default blockdax cache mode: wb, wc, uc or wt");
static char *fail_probe = "";
module_param(fail_probe, charp, 0644);
MODULE_PARM_DESC(fail_probe, "testing: make probe fail at this step, to check that it undoes the steps before it");

struct iopmem_cfg {
	struct list_head list;
	char bdf[16];
	int mode;
	int bar;
	int cache;
};

struct iopmem_dev {
	struct list_head list;
	struct pci_dev *pdev;
	int id;
	int mode;
	int bar;
	int cache;
	phys_addr_t phys;
	resource_size_t size;
	bool region;
	/* blockdax */
	struct dev_pagemap pgmap;
	void *virt;		/* cache=wb: the ZONE_DEVICE direct map */
	void __iomem *io;	/* other cache modes: ioremap_{wc,uc,wt} */
	struct gendisk *disk;
	struct dax_device *dax_dev;
};

static DEFINE_MUTEX(iopmem_lock);
static LIST_HEAD(iopmem_cfgs);
static LIST_HEAD(iopmem_devs);
static DEFINE_IDA(iopmem_ida);
static char last_error[192];

static int lookup_name(const char * const *names, int n, const char *s)
{
	int i;

	for (i = 0; i < n; i++)
		if (sysfs_streq(s, names[i]))
			return i;
	return -EINVAL;
}

static __printf(2, 3) void set_error(struct pci_dev *pdev, const char *fmt,
				     ...)
{
	char msg[160];
	va_list args;

	va_start(args, fmt);
	vsnprintf(msg, sizeof(msg), fmt, args);
	va_end(args);
	dev_err(&pdev->dev, "%s\n", msg);
	mutex_lock(&iopmem_lock);
	snprintf(last_error, sizeof(last_error), "%s %s\n", pci_name(pdev),
		 msg);
	mutex_unlock(&iopmem_lock);
}

/*
 * fail_probe=STEP makes the step of that name fail as if the kernel had
 * refused it: enable, region, memremap, ioremap, disk, dax, dax_host,
 * add_disk (blockdax), dax_region, dev_dax (devdax), p2pdma (p2pmem). The
 * guest suite fails each in turn and checks that nothing is left behind.
 */
static bool iopmem_inject(struct pci_dev *pdev, const char *step)
{
	bool hit;

	kernel_param_lock(THIS_MODULE);
	hit = fail_probe && sysfs_streq(fail_probe, step);
	kernel_param_unlock(THIS_MODULE);
	if (hit)
		dev_warn(&pdev->dev, "fail_probe=%s: failing probe here\n", step);
	return hit;
}

/* Called with iopmem_lock held. */
static struct iopmem_cfg *find_cfg(const char *bdf)
{
	struct iopmem_cfg *cfg;

	list_for_each_entry(cfg, &iopmem_cfgs, list)
		if (!strcmp(cfg->bdf, bdf))
			return cfg;
	return NULL;
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

static void iopmem_submit_bio(struct bio *bio)
{
	struct iopmem_dev *idev = bio->bi_bdev->bd_disk->private_data;
	bool write = op_is_write(bio_op(bio));
	struct bvec_iter iter;
	struct bio_vec bv;

	if (bio_op(bio) == REQ_OP_DISCARD || bio_op(bio) == REQ_OP_FLUSH) {
		bio_endio(bio);
		return;
	}
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
		pci_release_region(idev->pdev, idev->bar);
	ida_free(&iopmem_ida, idev->id);
	pci_dev_put(idev->pdev);
	kfree(idev);
}

static const struct block_device_operations iopmem_fops = {
	.owner		= THIS_MODULE,
	.submit_bio	= iopmem_submit_bio,
	.free_disk	= iopmem_free_disk,
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
	struct queue_limits lim = {
		.logical_block_size	= 512,
		.physical_block_size	= PAGE_SIZE,
		.max_hw_sectors		= UINT_MAX,
		.features		= BLK_FEAT_WRITE_CACHE |
					  BLK_FEAT_SYNCHRONOUS,
	};
	struct gendisk *disk;
	void *addr;
	int rc;

	if (iopmem_inject(pdev, "region") ||
	    pci_request_region(pdev, idev->bar, DRV_NAME)) {
		set_error(pdev, "BAR %d is claimed by someone else", idev->bar);
		return -EBUSY;
	}
	idev->region = true;

	if (idev->cache == IOPMEM_WB) {
		lim.features |= BLK_FEAT_DAX;
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
	}

	disk = iopmem_inject(pdev, "disk") ? ERR_PTR(-ENOMEM) :
		blk_alloc_disk(&lim, nid);
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
		idev->dax_dev = dax_dev;
		rc = iopmem_inject(pdev, "dax_host") ? -ENOMEM :
			dax_add_host(dax_dev, disk);
		if (rc) {
			set_error(pdev, "dax_add_host failed (%d)", rc);
			goto out_dax;
		}
	}

	rc = iopmem_inject(pdev, "add_disk") ? -ENOMEM :
		device_add_disk(&pdev->dev, disk, NULL);
	if (rc) {
		set_error(pdev, "device_add_disk failed (%d)", rc);
		goto out_host;
	}
	/* From here on iopmem_free_disk() owns idev. */
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
	pci_release_region(pdev, idev->bar);
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

/* ---- devdax and p2pmem ------------------------------------------------- */

static int iopmem_devdax_probe(struct iopmem_dev *idev)
{
	struct pci_dev *pdev = idev->pdev;
	struct range range = {
		.start = idev->phys,
		.end = idev->phys + idev->size - 1,
	};
	struct dev_dax_data data = { };
	struct dax_region *region;
	struct dev_dax *dev_dax;

	/* flags 0: IORESOURCE_DAX_KMEM would online the BAR as System RAM */
	region = iopmem_inject(pdev, "dax_region") ? NULL :
		alloc_dax_region(&pdev->dev, IOPMEM_DAX_REGION_BASE + idev->id,
				 &range, dev_to_node(&pdev->dev), PMD_SIZE, 0);
	if (!region) {
		set_error(pdev, "alloc_dax_region failed for BAR %d", idev->bar);
		return -ENOMEM;
	}
	data.dax_region = region;
	data.id = -1;
	data.size = idev->size;
	dev_dax = iopmem_inject(pdev, "dev_dax") ? ERR_PTR(-ENOMEM) :
		devm_create_dev_dax(&data);
	if (IS_ERR(dev_dax)) {
		set_error(pdev, "devm_create_dev_dax failed (%ld)",
			  PTR_ERR(dev_dax));
		return PTR_ERR(dev_dax);
	}
	/* Both are torn down by devres after remove(). */
	return 0;
}

static int iopmem_p2pmem_probe(struct iopmem_dev *idev)
{
	struct pci_dev *pdev = idev->pdev;
	int rc;

	rc = iopmem_inject(pdev, "p2pdma") ? -ENOMEM :
		pci_p2pdma_add_resource(pdev, idev->bar, idev->size, 0);
	if (rc) {
		set_error(pdev, "pci_p2pdma_add_resource failed for BAR %d (%d)",
			  idev->bar, rc);
		return rc;
	}
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

static int check_bar(struct pci_dev *pdev, int b)
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
	if (idev->mode != IOPMEM_BLOCKDAX && idev->cache != IOPMEM_WB) {
		set_error(pdev, "cache=%s is only for blockdax: %s keeps the kernel's mapping",
			  cache_names[idev->cache], mode_names[idev->mode]);
		goto out_free;
	}
	if (idev->bar < 0)
		idev->bar = pick_bar(pdev);
	rc = check_bar(pdev, idev->bar);
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
	/* devres: disabled after the devdax/p2pmem devres are gone */
	rc = devm_add_action_or_reset(&pdev->dev, iopmem_disable, pdev);
	if (rc)
		goto out_ida;
	pci_set_master(pdev);

	pci_dev_get(pdev);
	switch (idev->mode) {
	case IOPMEM_BLOCKDAX:
		rc = iopmem_blockdax_probe(idev);
		break;
	case IOPMEM_DEVDAX:
		rc = iopmem_devdax_probe(idev);
		break;
	default:
		rc = iopmem_p2pmem_probe(idev);
		break;
	}
	if (rc) {
		pci_dev_put(pdev);
		goto out_ida;
	}

	mutex_lock(&iopmem_lock);
	list_add_tail(&idev->list, &iopmem_devs);
	mutex_unlock(&iopmem_lock);
	dev_info(&pdev->dev, "%s over BAR %d (%pa, %llu MiB, cache %s)\n",
		 mode_names[idev->mode], idev->bar, &idev->phys,
		 (unsigned long long)(idev->size >> 20),
		 cache_names[idev->cache]);
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
	ida_free(&iopmem_ida, idev->id);
	pci_dev_put(pdev);
	kfree(idev);
}

/* ---- sysfs ------------------------------------------------------------- */

static int find_dax_child(struct device *dev, void *data)
{
	if (strncmp(dev_name(dev), "dax", 3) || !strchr(dev_name(dev), '.'))
		return 0;
	strscpy(data, dev_name(dev), 32);
	return 1;
}

static ssize_t iopmem_show(struct device *dev, char *buf, int what)
{
	struct pci_dev *pdev = to_pci_dev(dev);
	struct iopmem_dev *idev;
	char node[32] = "";
	ssize_t len = -ENODEV;

	mutex_lock(&iopmem_lock);
	idev = find_dev(pdev);
	if (!idev)
		goto out;
	switch (what) {
	case 0:
		len = sysfs_emit(buf, "%s\n", mode_names[idev->mode]);
		break;
	case 1:
		len = sysfs_emit(buf, "%d\n", idev->bar);
		break;
	case 2:
		len = sysfs_emit(buf, "%s\n", cache_names[idev->cache]);
		break;
	case 3:
		if (idev->mode == IOPMEM_BLOCKDAX)
			strscpy(node, idev->disk->disk_name, sizeof(node));
		else if (idev->mode == IOPMEM_DEVDAX)
			device_for_each_child(dev, node, find_dax_child);
		else
			strscpy(node, "p2pmem", sizeof(node));
		len = sysfs_emit(buf, "%s\n", node);
		break;
	case 4:
		len = sysfs_emit(buf, "%pa\n", &idev->phys);
		break;
	default:
		len = sysfs_emit(buf, "%llu\n", (unsigned long long)idev->size);
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

IOPMEM_ATTR(mode, 0);
IOPMEM_ATTR(bar, 1);
IOPMEM_ATTR(cache, 2);
IOPMEM_ATTR(node, 3);
IOPMEM_ATTR(phys, 4);
IOPMEM_ATTR(size, 5);

static struct attribute *iopmem_dev_attrs[] = {
	&dev_attr_mode.attr,
	&dev_attr_bar.attr,
	&dev_attr_cache.attr,
	&dev_attr_node.attr,
	&dev_attr_phys.attr,
	&dev_attr_size.attr,
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
	list_for_each_entry(cfg, &iopmem_cfgs, list)
		len += sysfs_emit_at(buf, len, "%s mode=%s bar=%d cache=%s\n",
				     cfg->bdf, mode_names[cfg->mode], cfg->bar,
				     cache_names[cfg->cache]);
	mutex_unlock(&iopmem_lock);
	return len;
}

/* "BDF [mode=M] [bar=N] [cache=C]" sets, "BDF" alone forgets an entry. */
static ssize_t config_store(struct device_driver *drv, const char *buf,
			    size_t count)
{
	unsigned int dom, bus, dev, fn;
	struct iopmem_cfg tmp, *cfg;
	char *copy, *p, *tok;
	bool forget = true;
	int rc = -EINVAL;

	copy = kstrndup(buf, count, GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	p = strim(copy);
	tok = strsep(&p, " \t");
	if (!tok || sscanf(tok, "%x:%x:%x.%x", &dom, &bus, &dev, &fn) != 4 ||
	    dom > 0xffff || bus > 0xff || dev > 0x1f || fn > 7)
		goto out;
	snprintf(tmp.bdf, sizeof(tmp.bdf), "%04x:%02x:%02x.%x",
		 dom, bus, dev, fn);
	tmp.mode = IOPMEM_BLOCKDAX;
	tmp.bar = -1;
	tmp.cache = IOPMEM_WB;
	while ((tok = strsep(&p, " \t"))) {
		if (!*tok)
			continue;
		forget = false;
		if (!strncmp(tok, "mode=", 5)) {
			tmp.mode = lookup_name(mode_names,
					       ARRAY_SIZE(mode_names), tok + 5);
			if (tmp.mode < 0)
				goto out;
		} else if (!strncmp(tok, "cache=", 6)) {
			tmp.cache = lookup_name(cache_names,
						ARRAY_SIZE(cache_names),
						tok + 6);
			if (tmp.cache < 0)
				goto out;
		} else if (!strncmp(tok, "bar=", 4)) {
			if (kstrtoint(tok + 4, 10, &tmp.bar) ||
			    tmp.bar < -1 || tmp.bar >= PCI_STD_NUM_BARS)
				goto out;
		} else {
			goto out;
		}
	}

	mutex_lock(&iopmem_lock);
	cfg = find_cfg(tmp.bdf);
	if (forget) {
		if (cfg) {
			list_del(&cfg->list);
			kfree(cfg);
		}
	} else {
		if (!cfg) {
			cfg = kzalloc(sizeof(*cfg), GFP_KERNEL);
			if (!cfg) {
				mutex_unlock(&iopmem_lock);
				rc = -ENOMEM;
				goto out;
			}
			list_add_tail(&cfg->list, &iopmem_cfgs);
		}
		strscpy(cfg->bdf, tmp.bdf, sizeof(cfg->bdf));
		cfg->mode = tmp.mode;
		cfg->bar = tmp.bar;
		cfg->cache = tmp.cache;
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
	ssize_t len;

	mutex_lock(&iopmem_lock);
	len = sysfs_emit(buf, "%s", last_error);
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
	return pci_register_driver(&iopmem_driver);
}

static void __exit iopmem_exit(void)
{
	struct iopmem_cfg *cfg, *next;

	pci_unregister_driver(&iopmem_driver);
	list_for_each_entry_safe(cfg, next, &iopmem_cfgs, list) {
		list_del(&cfg->list);
		kfree(cfg);
	}
	ida_destroy(&iopmem_ida);
}

module_init(iopmem_init);
module_exit(iopmem_exit);

MODULE_DESCRIPTION("PCIe BAR as a DAX block device, device-dax or p2pmem");
MODULE_AUTHOR("iopmem contributors");
MODULE_LICENSE("GPL");
MODULE_VERSION("0.1.0");
