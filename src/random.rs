//! Random bytes from the operating system, fetched a block at a time.
//!
//! Every emitted event takes 16 random bytes for its id and every attempt 8 for its retry
//! jitter. Asking the kernel each time was a system call per event and per attempt, the most
//! frequent system call on the emit path after the socket writes; one call now serves a
//! thread 32 ids or 64 jitters. The bytes are the kernel's own, unchanged, and none is handed
//! out twice. A process that forks without exec would share its parent's unused bytes (async
//! programs seldom do).

use std::cell::RefCell;

const BLOCK: usize = 512;

struct Pool {
    bytes: [u8; BLOCK],
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; BLOCK],
            next: BLOCK,
        })
    };
}

/// `N` random bytes (at most 512), or `None` if the operating system has none to give.
pub(crate) fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    const { assert!(N <= BLOCK) };
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.next + N > BLOCK {
            getrandom::fill(&mut pool.bytes).ok()?;
            pool.next = 0;
        }
        let mut out = [0; N];
        out.copy_from_slice(&pool.bytes[pool.next..pool.next + N]);
        pool.next += N;
        Some(out)
    })
}

/// A new version 4 (random) UUID.
pub(crate) fn uuid_v4() -> uuid::Uuid {
    match random_bytes::<16>() {
        Some(bytes) => uuid::Builder::from_random_bytes(bytes).into_uuid(),
        // The kernel had nothing to give; uuid asks it again, and reports the failure.
        None => uuid::Uuid::new_v4(),
    }
}

/// A fresh version 4 UUID in its hyphenated lower-case form, allocated once at its exact
/// size (`to_string` goes through the formatter and grows its string several times).
pub(crate) fn uuid_v4_string() -> String {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid_v4().hyphenated().encode_lower(&mut text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_version_4_and_never_repeat_across_many_refills() {
        let ids: HashSet<uuid::Uuid> = (0..10_000).map(|_| uuid_v4()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
        assert!(
            ids.iter()
                .all(|id| id.get_variant() == uuid::Variant::RFC4122)
        );
    }

    #[test]
    fn threads_get_different_bytes() {
        let here = random_bytes::<32>().expect("random bytes");
        let there = std::thread::spawn(random_bytes::<32>)
            .join()
            .expect("a thread")
            .expect("random bytes");
        assert_ne!(here, there);
    }
}
