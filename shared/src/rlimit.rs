//! Process limits (feature `rlimit`, Unix only). Raising the open-file limit: every client is
//! a socket, and the default soft limit (often 1024) would cap a server or a bot process far
//! below what the machine can hold. And a thread's nice value: a load generator sharing a
//! machine with the server it measures can yield the CPU to it.
#![allow(unsafe_code)]

/// The soft and hard `RLIMIT_NOFILE` after the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    /// Soft limit now in force.
    pub soft: u64,
    /// Hard limit (the ceiling for the soft one).
    pub hard: u64,
}

/// Raises the soft open-file limit to `want` or the hard limit, whichever is lower.
pub fn raise_nofile(want: u64) -> std::io::Result<NoFile> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let target = want.min(lim.rlim_max);
    if target > lim.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim.rlim_cur = target;
    }
    Ok(NoFile {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// The calling thread's kernel id, by the raw system call (`libc::gettid` needs glibc 2.30).
#[cfg(target_os = "linux")]
fn this_thread() -> libc::id_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    tid as libc::id_t
}

/// Sets the calling thread's nice value to `nice` (Linux keeps one per thread, and
/// `setpriority` with the thread's own id changes only that thread; threads it starts later
/// inherit it). An unprivileged process may only raise it (0 to 19). 0 changes nothing.
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its arguments.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, this_thread(), nice) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "a per-thread nice value needs Linux",
        ))
    }
}

/// The calling thread's nice value.
pub fn thread_nice() -> std::io::Result<i32> {
    #[cfg(target_os = "linux")]
    {
        // getpriority may return -1 as a value: errno tells an error apart.
        let tid = this_thread();
        // SAFETY: getpriority only reads its arguments, and errno is this thread's own.
        let (v, errno) = unsafe {
            *libc::__errno_location() = 0;
            let v = libc::getpriority(libc::PRIO_PROCESS, tid);
            (v, *libc::__errno_location())
        };
        if errno == 0 {
            Ok(v)
        } else {
            Err(std::io::Error::from_raw_os_error(errno))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "a per-thread nice value needs Linux",
        ))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn nice_is_per_thread() {
        let before = thread_nice().unwrap_or(i32::MIN);
        let inside = std::thread::spawn(|| {
            let start = thread_nice().unwrap_or(i32::MIN);
            let set = set_thread_nice(start + 3).is_ok();
            (start, set, thread_nice().unwrap_or(i32::MIN))
        })
        .join()
        .unwrap_or((0, false, 0));
        assert!(inside.1, "raising a thread's nice value is always allowed");
        // Nice values stop at 19.
        assert_eq!(inside.2, (inside.0 + 3).min(19));
        // The spawning thread keeps its own.
        assert_eq!(thread_nice().unwrap_or(i32::MIN), before);
    }
}
