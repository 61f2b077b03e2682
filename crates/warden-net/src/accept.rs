//! What to do when `accept` fails.

use std::io;
use std::time::Duration;

use crate::warn::WarnEvery;

/// The first pause after a resource error, doubled on each one in a row up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Whether an accept error concerns only the connection being accepted (it was reset or
/// aborted before we got to it): the listener is fine and the next accept may go at once.
pub fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Paces an accept loop through resource errors (out of descriptors, memory or buffers):
/// retrying at once would spin, a fixed short pause would still warn twenty times a second.
/// The pause doubles while errors continue, and the warning repeats once per 10 s at most.
pub struct AcceptBackoff {
    pause: Duration,
    warn: WarnEvery,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            pause: FIRST_PAUSE,
            warn: WarnEvery::new(Duration::from_secs(10)),
        }
    }
}

impl AcceptBackoff {
    /// After an accept succeeded.
    pub fn succeeded(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// After an accept failed: returns at once for a per-connection error, and pauses
    /// otherwise. `listener` names the listener in the warning.
    pub async fn failed(&mut self, err: &io::Error, listener: &str) {
        if is_per_connection(err) {
            tracing::debug!(listener, error = %err, "accept: connection gone before it was accepted");
            return;
        }
        if let Some(suppressed) = self.warn.due() {
            tracing::warn!(
                listener,
                error = %err,
                pause = ?self.pause,
                suppressed,
                "accept failed (descriptor or memory limit?); pausing this listener"
            );
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_errors() {
        assert!(is_per_connection(&io::ErrorKind::ConnectionAborted.into()));
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24))); // EMFILE
    }

    #[tokio::test(start_paused = true)]
    async fn pause_doubles_up_to_a_second() {
        let mut b = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let start = tokio::time::Instant::now();
        for _ in 0..20 {
            b.failed(&emfile, "test").await;
        }
        assert_eq!(b.pause, MAX_PAUSE);
        let took = start.elapsed();
        assert!(
            took > Duration::from_secs(5) && took < Duration::from_secs(20),
            "{took:?}"
        );
        b.succeeded();
        assert_eq!(b.pause, FIRST_PAUSE);
        let before = tokio::time::Instant::now();
        b.failed(&io::ErrorKind::ConnectionReset.into(), "test")
            .await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
