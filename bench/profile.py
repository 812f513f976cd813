#!/usr/bin/env python3
"""Where the instructions between two tb-insns snapshots went, per IO (tools/bench --profile).

usage: profile.py PRE.snap POST.snap IOS LABEL [PID...]
Runs in the guest, as root. PRE and POST are bench/tb-insns.c's snapshots around one fio run
of IOS IOs. Each block's instructions go to the function its address falls in: the kernel's
and its modules' functions from /proc/kallsyms; user-space addresses inside an executable
mapping of one of the PIDs (ublkd) to that process's binary or library (and the binary's own
functions by nm), any other user-space address to "user other" (fio, and whatever else ran).
Prints on stdout the groups' instructions per IO as bench/lib.sh's events ('"insn NAME":N,...',
summed to "insn total"), and on stderr LABEL's 30 costliest functions per IO with their groups,
then the 15 costliest that no group claims ("kernel other").
Instructions of all vCPUs count, idle ones included (with --icount an idle vCPU runs none).
"""
import bisect
import os
import re
import subprocess
import sys

KERNEL_START = 0xFFFF800000000000

# Core kernel functions by name, first match wins. Modules are grouped by module name.
GROUPS = [
    ("io_uring", r"^(__)?io_|^io_uring|^tctx_|^__x64_sys_io_uring|^__do_sys_io_uring"),
    ("block", r"^(__)?(blk|bio|blkdev|bdev|submit_bio|disk_|part_|dd_|bfq|kyber|sbitmap|elv_|rq_|"
              r"__rq_|req_|blk_mq|bvec|iov_iter_bvec|mempool)"),
    ("task work", r"^task_work_"),
    ("sched+wakeup", r"schedule|^(__)?switch_|^finish_task_switch|^try_to_wake_up|^ttwu|_fair$|"
                     r"^pick_|^put_prev|^set_next|^enqueue|^dequeue|^update_(curr|load|cfs|rq|min)|"
                     r"^select_(task_rq|idle)|^sched_|^psi_|^cpuacct|^reweight|^check_preempt|"
                     r"^resched|^(__)?(en|de)queue_|sched_clock|^record_times|^wake_up|^__wake_up|^wake_q|^autoremove_wake|^prepare_to_wait|"
                     r"^finish_wait|^default_wake_function|^raw_spin_rq|^_raw_spin|^native_queued_spin|"
                     r"^queued_spin|^migrate_|^__update_|^avg_vruntime|^place_entity|^update_entity|"
                     r"^newidle|^balance_|^nohz_|^idle_cpu|^available_idle|^cpus_share|^__cgroup_account|"
                     r"^cgroup_rstat|^hrtick|^mm_cid|^__smp_call_single_queue|^send_call_function|"
                     r"^llist_|^__flush_smp_call|^flush_smp_call|^generic_exec_single|^native_send_call|"
                     r"^x2apic_send|^default_send_IPI|^__x2apic"),
    ("idle", r"^do_idle|^cpuidle|^default_idle|^arch_cpu_idle|^cpu_startup_entry|^acpi_idle|"
             r"^mwait|^poll_idle|^tick_nohz_idle|^call_cpuidle|^__cpuidle|^native_safe_halt|^pv_native_safe_halt"),
    ("syscall+irq entry", r"^entry_|^syscall_|^do_syscall|^x64_sys_call|^exit_to_user|^irqentry|"
                          r"^__x64_sys_|^do_sys|^__do_sys|^ksys_|^__fdget|^fdget|^fput|^__fput|^fget|"
                          r"^asm_|^error_entry|^error_return|^restore_regs|^__irq_exit|^irq_exit|"
                          r"^irq_enter|^common_interrupt|^sysvec_|^__sysvec_|^handle_|^arch_exit_to|"
                          r"^fpregs_|^switch_fpu|^restore_fpregs|^__rseq|^rseq_|^syscall_exit|^__audit"),
    ("timers+softirq", r"^hrtimer|^__hrtimer|^tick_|^timer|^__run_timer|^run_timer|^update_process_times|"
                       r"^account_|^ktime_|^clockevents|^lapic_|^native_apic|^__do_softirq|^do_softirq|"
                       r"^handle_softirqs|^rcu_|^__rcu|^note_gp|^scheduler_tick|^sched_tick|^calc_global|"
                       r"^read_tsc|^native_read_msr|^native_write_msr|^kvm_clock|^irqtime|^vtime|^jiffies"),
    ("mm+copy", r"copy_|^rep_movs|^memcpy|^__memcpy|^memset|^__memset|^memmove|^clear_page|^pin_user|"
                r"^unpin_user|^get_user_pages|^__get_user_pages|^gup_|^follow_|^kmem_cache|^kmalloc|"
                r"^__kmalloc|^kfree|^__kfree|^slab|^__slab|^___slab|^page_|^folio|^__folio|^__alloc_pages|"
                r"^alloc_pages|^free_unref|^__free_|^get_page|^put_page|^mod_|^__mod_|^lru_|^__lru|"
                r"^try_get_folio|^internal_get_user|^check_heap|^__check_object|^__virt_addr_valid|^refill_obj|^obj_cgroup|"
                r"^__memcg|^memcg|^percpu_|^pcpu|^find_vma|^vma_|^lock_vma|^mmap_|^try_grab|^__pte|^pte_|^pmd_|"
                r"^pud_|^handle_mm_fault|^__handle_mm_fault|^do_user_addr_fault|^exc_page_fault|^iov_iter|"
                r"^_copy|^import_|^__import"),
    ("fs", r"^vfs_|^rw_verify|^generic_|^filemap|^iomap|^ext4|^shmem|^__generic|^file_|^touch_atime|"
           r"^security_|^aa_|^apparmor|^fsnotify|^__fsnotify|^inode_|^current_time|^kiocb|^atime"),
]
GROUPS = [(name, re.compile(rx)) for name, rx in GROUPS]


def read_snap(path):
    counts = {}
    with open(path) as f:
        for line in f:
            a, n = line.split()
            counts[int(a, 16)] = int(n)
    return counts


def kernel_symbols():
    addrs, names = [], []
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or parts[1] not in "tTwW":
                continue
            a = int(parts[0], 16)
            if a == 0:
                sys.exit("profile.py: /proc/kallsyms shows no addresses (kptr_restrict; run as root)")
            names.append(parts[2] + (" " + parts[3] if len(parts) > 3 else ""))
            addrs.append(a)
    order = sorted(range(len(addrs)), key=addrs.__getitem__)
    return [addrs[i] for i in order], [names[i] for i in order]


def nm_symbols(path):
    """Functions of an ELF file by file offset (PIE/shared: the value is the link address)."""
    out = []
    for flags in (["-n", "--defined-only"], ["-n", "--defined-only", "-D"]):
        try:
            text = subprocess.run(["nm", *flags, path], capture_output=True, text=True).stdout
        except OSError:
            return []
        for line in text.splitlines():
            p = line.split()
            if len(p) == 3 and p[1] in "tTwW":
                out.append((int(p[0], 16), p[2]))
        if out:
            break
    out.sort()
    return out


def user_maps(pids):
    maps = []  # (start, end, offset, path)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    p = line.split()
                    if len(p) < 6 or "x" not in p[1] or not p[5].startswith("/"):
                        continue
                    s, e = (int(x, 16) for x in p[0].split("-"))
                    maps.append((s, e, int(p[2], 16), p[5]))
        except OSError:
            pass
    return sorted(maps)


def group_of(name):
    if name.endswith("]") and " [" in name:
        return name[name.rindex("[") + 1:-1]
    for g, rx in GROUPS:
        if rx.search(name):
            return g
    return "kernel other"


def main():
    pre, post, ios, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    pids = sys.argv[5:]
    if ios <= 0:
        sys.exit("profile.py: no IOs")
    a, b = read_snap(pre), read_snap(post)
    kaddrs, knames = kernel_symbols()
    maps = user_maps(pids)
    mstarts = [m[0] for m in maps]
    elf = {}
    ublkd_name = "ublkd"
    by_fn, by_group = {}, {}
    for addr, n in b.items():
        d = n - a.get(addr, 0)
        if d <= 0:
            continue
        if addr >= KERNEL_START:
            i = bisect.bisect_right(kaddrs, addr) - 1
            fn = knames[i] if i >= 0 else "kernel ?"
            g = group_of(fn)
        else:
            i = bisect.bisect_right(mstarts, addr) - 1
            if i >= 0 and addr < maps[i][1]:
                s, e, off, path = maps[i]
                if path not in elf:
                    elf[path] = nm_symbols(path)
                syms = elf[path]
                fo = addr - s + off
                j = bisect.bisect_right(syms, (fo, "\uffff")) - 1
                base = os.path.basename(path)
                fn = f"{ublkd_name}:{base}:{syms[j][1] if j >= 0 else '?'}"
                g = f"{ublkd_name} user ({'own code' if base == 'ublkd' else base.split('.so')[0]})"
            else:
                fn, g = "user other", "user other (fio...)"
        by_fn[(fn, g)] = by_fn.get((fn, g), 0) + d
        by_group[g] = by_group.get(g, 0) + d
    total = sum(by_group.values())
    events = [f'"insn {g}":{n / ios:.1f}' for g, n in sorted(by_group.items())]
    events.append(f'"insn total":{total / ios:.1f}')
    print(",".join(events))
    top = sorted(by_fn.items(), key=lambda kv: -kv[1])[:30]
    print(f"PROFILE {label}: {total / ios:.0f} instructions per IO ({ios} IOs); costliest functions:",
          file=sys.stderr)
    for (fn, g), n in top:
        print(f"PROFILE {label}: {n / ios:9.1f}  {fn:60} {g}", file=sys.stderr)
    # what the groups miss, for their names to be kept up to date
    other = sorted(((fn, n) for (fn, g), n in by_fn.items() if g == "kernel other"), key=lambda kv: -kv[1])
    print(f"PROFILE {label}: kernel other: " + ", ".join(f"{fn} {n / ios:.0f}" for fn, n in other[:15]),
          file=sys.stderr)


main()
