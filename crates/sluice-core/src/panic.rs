//! Catching panics and telling whose code panicked. A panic in a user
//! closure is a user error; a panic in Sluice's own code is a bug. The
//! difference is where the panic happened: a process-wide panic hook (which
//! chains to the one it replaces, so panics still print) remembers the
//! location of the last panic on each thread, and [`catch`] reads it after
//! unwinding. Locations carry `#[track_caller]` through `unwrap`, `expect`
//! and indexing, so a user's `unwrap()` points at the user's file.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use crate::error::{ErrorOrigin, SluiceError};

thread_local! {
    static LAST_PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL_HOOK: Once = Once::new();

/// The crates whose source files are Sluice's own code.
const SLUICE_CRATES: [&str; 11] = [
    "sluice-core",
    "sluice-state",
    "sluice-runtime",
    "sluice-checkpoint",
    "sluice-cluster",
    "sluice-connectors",
    "sluice-api",
    "sluice-nexmark",
    "sluice-kafka",
    "sluice-web",
    "sluice-cli",
];

fn install_hook() {
    INSTALL_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location =
                info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            LAST_PANIC_LOCATION.with(|last| *last.borrow_mut() = location);
            previous(info);
        }));
    });
}

/// Runs `f`, turning a panic into [`SluiceError::Panic`] classified by where it happened.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, SluiceError> {
    install_hook();
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let location = LAST_PANIC_LOCATION.with(|last| last.borrow_mut().take());
        let origin = match &location {
            Some(l) if is_sluice_source(l) => ErrorOrigin::Internal,
            _ => ErrorOrigin::User,
        };
        SluiceError::Panic {
            message: panic_message(&payload),
            location: location.unwrap_or_else(|| "unknown location".into()),
            origin,
        }
    })
}

/// Whether a source path lies in one of Sluice's library crates: a path
/// component naming the crate (in the workspace, or `crate-VERSION` from a
/// registry) directly followed by `src`. Tests and examples are not Sluice's code.
pub fn is_sluice_source(path: &str) -> bool {
    let parts: Vec<&str> = path.split(['/', '\\']).collect();
    parts.windows(2).any(|w| {
        w[1] == "src"
            && SLUICE_CRATES.iter().any(|c| {
                w[0] == *c
                    || w[0]
                        .strip_prefix(c)
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(|v| v.starts_with(|ch: char| ch.is_ascii_digit()))
            })
    })
}

/// The message of a panic payload.
pub fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sluice_library_sources_are_recognised_in_the_workspace_and_from_a_registry() {
        assert!(is_sluice_source("crates/sluice-runtime/src/operator.rs:10:5"));
        assert!(is_sluice_source(
            "/root/.cargo/registry/src/index.crates.io-1/sluice-core-0.1.0/src/element.rs:3:1"
        ));
        assert!(!is_sluice_source("crates/sluice/tests/failures.rs:140:13"));
        assert!(!is_sluice_source("src/main.rs:4:9"));
        assert!(!is_sluice_source("/home/me/sluice-jobs/src/main.rs:4:9"));
        assert!(!is_sluice_source("/rustc/abc/library/core/src/option.rs:1:1"));
    }

    #[test]
    fn a_panic_in_sluices_own_source_is_classed_internal() {
        let err = catch(|| panic!("boom {}", 7)).unwrap_err();
        assert!(
            matches!(
                &err,
                SluiceError::Panic { message, origin: ErrorOrigin::Internal, location }
                    if message == "boom 7" && location.contains("sluice-core/src/panic.rs")
            ),
            "a panic in sluice-core's own source is internal: {err:?}"
        );
    }

    #[test]
    fn a_value_passes_through() {
        assert_eq!(catch(|| 5).unwrap(), 5);
    }
}
