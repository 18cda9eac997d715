//! The uploads in progress: who started each (repository, user), its spool and hash state
//! (`wharf_cache::Upload`), and when it last received bytes. An upload's id is 128 random bits;
//! one idle for longer than `hosted.upload_timeout` is swept with its spool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;
use wharf_cache::Upload;
use wharf_oci::{Digest, ErrorCode, RepositoryName};

use crate::error::ProxyError;

/// The most uploads in progress at once (each holds an open file).
const MAX_SESSIONS: usize = 256;
/// The most uploads in progress of one user.
const MAX_SESSIONS_PER_USER: usize = 32;

/// The uploads in progress, by id.
pub(super) struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    timeout: Duration,
}

/// One upload in progress.
pub(super) struct Session {
    pub(super) id: String,
    repo: RepositoryName,
    user: String,
    pub(super) state: tokio::sync::Mutex<State>,
}

pub(super) struct State {
    /// `None` once completed or cancelled (a request that raced it finds it gone).
    pub(super) upload: Option<Upload>,
    pub(super) last_active: Instant,
}

impl Sessions {
    /// No uploads yet; abandoned ones are swept on the current runtime (if there is one) for
    /// as long as the sessions live.
    pub(super) fn start(timeout: Duration) -> Arc<Sessions> {
        let sessions = Sessions::new(timeout);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&sessions), timeout));
        }
        sessions
    }

    /// No uploads, and no sweep but [`Sessions::sweep_idle`] calls.
    fn new(timeout: Duration) -> Arc<Sessions> {
        Arc::new(Sessions {
            map: Mutex::default(),
            timeout,
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether `user` may start one more upload: each holds an open spool file until it ends
    /// or expires, so they are bounded, in all and per user (429 TOOMANYREQUESTS beyond).
    pub(super) fn admit(&self, user: &str) -> Result<(), ProxyError> {
        let map = self.map();
        let mine = map.values().filter(|s| s.user == user).count();
        if map.len() >= MAX_SESSIONS || mine >= MAX_SESSIONS_PER_USER {
            return Err(ProxyError::oci(
                ErrorCode::TooManyRequests,
                format!(
                    "too many uploads in progress ({mine} of yours, {} in all; at most \
                     {MAX_SESSIONS_PER_USER} and {MAX_SESSIONS}): finish or cancel some first",
                    map.len()
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn insert(&self, repo: &RepositoryName, user: &str, upload: Upload) -> Arc<Session> {
        let session = Arc::new(Session {
            id: new_id(),
            repo: repo.clone(),
            user: user.to_owned(),
            state: tokio::sync::Mutex::new(State {
                upload: Some(upload),
                last_active: Instant::now(),
            }),
        });
        self.map().insert(session.id.clone(), session.clone());
        session
    }

    /// The upload `id` of `user` in `repo`; unknown otherwise, whoever else it belongs to.
    pub(super) fn find(
        &self,
        id: &str,
        repo: &RepositoryName,
        user: &str,
    ) -> Result<Arc<Session>, ProxyError> {
        self.map()
            .get(id)
            .filter(|s| s.repo == *repo && s.user == user)
            .cloned()
            .ok_or_else(unknown)
    }

    pub(super) fn remove(&self, id: &str) {
        self.map().remove(id);
    }

    /// Drops uploads idle for longer than the timeout; one in use by a request is not idle.
    async fn sweep_idle(&self) -> usize {
        let sessions: Vec<Arc<Session>> = self.map().values().cloned().collect();
        let mut swept = 0;
        for s in sessions {
            let Ok(mut state) = s.state.try_lock() else {
                continue;
            };
            if state.last_active.elapsed() < self.timeout {
                continue;
            }
            self.remove(&s.id);
            if let Some(upload) = state.upload.take() {
                upload.discard().await;
            }
            swept += 1;
        }
        swept
    }
}

/// Sweeps abandoned uploads every quarter of the timeout (at most every minute) until the
/// sessions are dropped.
async fn sweep(sessions: Weak<Sessions>, timeout: Duration) {
    let period = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::time::sleep(period).await;
        let Some(sessions) = sessions.upgrade() else {
            return;
        };
        let swept = sessions.sweep_idle().await;
        if swept > 0 {
            tracing::info!(swept, "abandoned uploads removed");
        }
    }
}

/// 128 random bits in hex: an upload's id is its capability, so it must not be guessable.
fn new_id() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // No /dev/urandom: still unique, if guessable; the id is bound to its user anyway.
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let seed = format!(
            "{:?}{}",
            std::time::SystemTime::now(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let d = Digest::sha256_of(seed.as_bytes());
        return d.hex()[..32].to_owned();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unknown() -> ProxyError {
    ProxyError::oci(
        ErrorCode::BlobUploadUnknown,
        "upload unknown: it was completed, cancelled or abandoned, or belongs to another repository or user; start it again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_uploads_are_swept_with_their_spool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = wharf_cache::Store::open(dir.path()).await.expect("open");
        let sessions = Sessions::new(Duration::from_secs(60));
        let repo = RepositoryName::parse("team/a").expect("name");
        let s = sessions.insert(&repo, "alice", store.begin_upload().await.expect("begin"));
        assert!(sessions.find(&s.id, &repo, "alice").is_ok());
        assert!(
            sessions.find(&s.id, &repo, "bob").is_err(),
            "another user's"
        );
        let other = RepositoryName::parse("team/b").expect("name");
        assert!(
            sessions.find(&s.id, &other, "alice").is_err(),
            "another repo's"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(sessions.sweep_idle().await, 0);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(sessions.sweep_idle().await, 1);
        assert_eq!(sessions.len(), 0);
        let spool = std::fs::read_dir(dir.path().join("spool")).expect("spool");
        assert_eq!(spool.count(), 0, "the spool went with the upload");
    }
}
