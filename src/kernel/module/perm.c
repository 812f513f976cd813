// SPDX-License-Identifier: GPL-2.0
/*
 * Who may send a control command for a device.
 *
 * A privileged device (added by a caller with CAP_SYS_ADMIN) is root's:
 * every command needs CAP_SYS_ADMIN.  An unprivileged device
 * (UBLK_F_UNPRIVILEGED_DEV, added by a caller without it) belongs to whoever
 * may open its char device: each command names that node in the first
 * dev_path_len bytes of its buffer, and the sender needs read access to it
 * for commands that only report, read and write access for the others.
 * The file's mode and owner are udev's to set (ublkd's rules leave the char
 * node root's, so its users go through ublkd), so the file system's
 * permission check is the policy, not this module.
 *
 * GET_DEV_INFO2 carries the path for every device, since a caller may not
 * know which kind a device is; on a privileged device it still needs
 * CAP_SYS_ADMIN first.
 *
 * The command's own data follows the path: h->addr and h->len are moved
 * past it here, for every command that carried one.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/mount.h>
#include <linux/namei.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "ublk.h"

/*
 * Commands that only report: reading the node is enough.  A command this
 * driver does not know is EINVAL here, for an unprivileged device, as
 * upstream answers (after reading the path).
 */
static int ublk_ctrl_perm_mask(int nr)
{
	switch (nr) {
	case UBLK_CMD_GET_DEV_INFO:
	case UBLK_CMD_GET_DEV_INFO2:
	case UBLK_CMD_GET_PARAMS:
	case UBLK_CMD_GET_QUEUE_AFFINITY:
		return MAY_READ;
	case UBLK_CMD_ADD_DEV:
	case UBLK_CMD_DEL_DEV:
	case UBLK_CMD_START_DEV:
	case UBLK_CMD_STOP_DEV:
	case UBLK_CMD_SET_PARAMS:
	case UBLK_CMD_START_USER_RECOVERY:
	case UBLK_CMD_END_USER_RECOVERY:
		return MAY_READ | MAY_WRITE;
	default:
		return -EINVAL;
	}
}

/*
 * The path must be this device's char device, on a mount where device
 * nodes mean something: elsewhere (a user's FUSE or user namespace mount)
 * anyone may make a node of any number, and owns it.
 */
static int ublk_check_node(struct ublk_device *ub, const char *name, int mask)
{
	struct path path;
	struct inode *inode;
	int ret;

	ret = kern_path(name, LOOKUP_FOLLOW, &path);
	if (ret)
		return ret;
	inode = d_backing_inode(path.dentry);
	if (!S_ISCHR(inode->i_mode) || inode->i_rdev != ub->cdev_dev.devt ||
	    (path.mnt->mnt_flags & MNT_NODEV) || (path.mnt->mnt_sb->s_iflags & SB_I_NODEV))
		ret = -EPERM;
	else
		ret = ublk_inode_permission(&path, inode, mask);
	path_put(&path);
	return ret;
}

int ublk_ctrl_permission(struct ublk_device *ub, int nr, struct ublksrv_ctrl_cmd *h)
{
	char *name;
	int mask, ret;

	if (!ublk_unprivileged(ub)) {
		if (!capable(CAP_SYS_ADMIN))
			return -EPERM;
		if (nr != UBLK_CMD_GET_DEV_INFO2)
			return 0;
	}

	/*
	 * Upstream's checks and errnos: a path of PATH_MAX bytes passes here
	 * and is too long for the lookup (ENAMETOOLONG).
	 */
	if (!h->dev_path_len || h->dev_path_len > PATH_MAX || h->dev_path_len > h->len ||
	    !h->addr)
		return -EINVAL;
	name = memdup_user_nul(u64_to_user_ptr(h->addr), h->dev_path_len);
	if (IS_ERR(name))
		return PTR_ERR(name);
	mask = ublk_ctrl_perm_mask(nr);
	/* a NUL inside would make us check a different name than was sent */
	if (mask < 0 || strlen(name) != h->dev_path_len)
		ret = -EINVAL;
	else
		ret = ublk_check_node(ub, name, mask);
	kfree(name);
	if (ret)
		return ret;

	h->addr += h->dev_path_len;
	h->len -= h->dev_path_len;
	return 0;
}
