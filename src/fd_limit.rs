//! The open-file limit: every connection is a file descriptor, and the soft limit a
//! process starts with is often far below what the hard limit allows (1,024 against
//! 20,000 or more). The relay and the bots raise it at start.

/// The soft limit before and after [`raise`] (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit the process started with.
    pub from: Option<u64>,
    /// The soft limit now (the hard limit).
    pub to: Option<u64>,
}

/// Raises the soft limit on open files to the hard limit. Fails where the system
/// refuses (for example an unlimited hard limit above the kernel's `nr_open`).
#[cfg(unix)]
pub fn raise() -> std::io::Result<Raised> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(Raised {
        from: limit.current,
        to: limit.maximum,
    })
}

/// Raises the soft limit on open files (nothing to do on this platform).
#[cfg(not(unix))]
pub fn raise() -> std::io::Result<Raised> {
    Ok(Raised { from: None, to: None })
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        use rustix::process::{Resource, getrlimit};
        let raised = super::raise().unwrap();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, now.maximum);
        assert_eq!(raised.to, now.maximum);
        // Raising again changes nothing.
        assert_eq!(super::raise().unwrap().from, now.current);
    }
}
