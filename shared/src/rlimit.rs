//! Raising the open-file limit (feature `rlimit`, Unix only): every client is a socket, and the default soft limit (often
//! 1024) would cap a server or a bot process far below what the machine can hold.
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
