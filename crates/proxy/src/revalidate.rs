//! Revalidating a tag past its TTL without holding the client for long.
//!
//! ```text
//! manifest_by_tag: record past tag_ttl, no back-off window open
//!   -> a revalidation of this tag already overran its deadline?  serve the record (stale) now
//!   -> spawn the revalidation (one HEAD; a GET by digest if the tag moved; the record updated)
//!   -> wait for it at most the upstream's revalidate_timeout:
//!        done:     its answer (current manifest, stale-if-error, or the upstream's 404)
//!        overran:  serve the record (stale, `revalidation_slow`); the revalidation goes on
//!                  in the background, bounded by response_timeout, and updates the record
//!   -> the tag moved: the platforms its clients pulled are warmed (warming.rs)
//! ```
//!
//! Serving stale only after a short deadline, rather than at once (nginx's
//! `proxy_cache_background_update`), keeps the common case exact: a healthy upstream answers a
//! HEAD in milliseconds, so a moved tag is followed on the request that finds it past its TTL.
//! Only a slow or hung upstream costs that request the deadline, and the next ones nothing.

use http::Method;
use tokio::time::Instant;
use wharf_cache::TagRecord;

use crate::error::{Missing, ProxyError};
use crate::freshness::{Stale, backoff_for};
use crate::manifest::{Manifest, Tagged, backoff_reason, stale};
use crate::upstreams::Target;
use crate::{Proxy, header_digest};

/// What a revalidation found.
enum Revalidation {
    /// The tag's manifest now: the record's (unchanged) or the one it moved to.
    Current(Manifest),
    /// The upstream failed in a way stale-if-error covers; its back-off window is open.
    Failed(wharf_upstream::Error),
}

impl Proxy {
    /// Revalidates `tag` (its record `rec`, its manifest `cached`), answering within the
    /// upstream's `revalidate_timeout`: see the module's drawing.
    pub(crate) async fn revalidate_within_deadline(
        &self,
        target: &Target,
        tag: &str,
        rec: TagRecord,
        cached: Manifest,
    ) -> Result<Tagged, ProxyError> {
        let up = &target.upstream;
        let key = format!("{}\0{}\0{tag}", up.name, target.repo.as_str());
        let slow = || {
            format!(
                "upstream {} has not answered within {:?} (revalidate_timeout); revalidating in the background",
                up.name, up.revalidate_timeout
            )
        };
        if self.in_background(&key) {
            self.served_stale(target, tag, Stale::Slow, None);
            return Ok(stale(target, tag, cached, slow()));
        }
        // The revalidation outlives this request when it overruns: it runs as a task of its
        // own, on the proxy it belongs to.
        let Some(me) = self.me.upgrade() else {
            return self.answer_revalidation(
                target,
                tag,
                &cached,
                self.revalidate(target, tag, rec, cached.clone()).await,
            );
        };
        let mut task = tokio::spawn({
            let (target, tag, cached) = (target.clone(), tag.to_owned(), cached.clone());
            let me = me.clone();
            // With the request's Via hops, as when it runs in the request's own task.
            let hops = wharf_upstream::incoming_via();
            wharf_upstream::with_incoming_via(hops, async move {
                me.revalidate(&target, &tag, rec, cached).await
            })
        });
        match tokio::time::timeout(up.revalidate_timeout, &mut task).await {
            Ok(Ok(found)) => self.answer_revalidation(target, tag, &cached, found),
            Ok(Err(panicked)) => {
                tracing::error!(upstream = %up.name, tag, error = %panicked, "tag revalidation failed");
                self.served_stale(target, tag, Stale::Failed, None);
                Ok(stale(
                    target,
                    tag,
                    cached,
                    format!("revalidating with upstream {} failed", up.name),
                ))
            }
            Err(_) => {
                self.background_mut().insert(key.clone());
                // Forgets the mark when the revalidation ends (at once if it already has).
                tokio::spawn(async move {
                    let _ = task.await;
                    me.background_mut().remove(&key);
                });
                self.served_stale(target, tag, Stale::Slow, None);
                Ok(stale(target, tag, cached, slow()))
            }
        }
    }

    /// Whether a revalidation of `key` overran its deadline and still runs.
    fn in_background(&self, key: &str) -> bool {
        self.background_mut().contains(key)
    }

    fn background_mut(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.revalidating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client's answer from what the revalidation found.
    fn answer_revalidation(
        &self,
        target: &Target,
        tag: &str,
        cached: &Manifest,
        found: Result<Revalidation, ProxyError>,
    ) -> Result<Tagged, ProxyError> {
        match found? {
            Revalidation::Current(m) => Ok((m, None)),
            Revalidation::Failed(e) => {
                self.served_stale(target, tag, Stale::of(&e), Some(&e));
                Ok(stale(target, tag, cached.clone(), backoff_reason(target)))
            }
        }
    }

    /// One HEAD upstream; the record updated with what it says (see `freshness.rs`).
    async fn revalidate(
        &self,
        target: &Target,
        tag: &str,
        rec: TagRecord,
        cached: Manifest,
    ) -> Result<Revalidation, ProxyError> {
        let up = &target.upstream;
        let repo = target.repo.as_str();
        let key = target.tag_key(tag);
        let head = up.client.manifest(Method::HEAD, repo, tag).await;
        let fresh = match head {
            Ok(resp) => {
                up.backoff.clear();
                match header_digest(&resp.headers) {
                    Some(d) if d == rec.digest => {
                        self.publish_tag(target, tag, &cached);
                        self.store.put_tag(
                            key,
                            TagRecord {
                                validated_at: Instant::now(),
                                ..rec
                            },
                        );
                        self.revalidated(target, "unchanged");
                        return Ok(Revalidation::Current(cached));
                    }
                    Some(d) => self
                        .fetch_manifest(target, &d.to_string(), Some(&d))
                        .await
                        .inspect(|_| self.revalidated(target, "changed"))
                        .inspect(|m| self.remember_tag(target, tag, m)),
                    // No digest on the HEAD: the only way to know is a GET.
                    None => self.fetch_tag(target, tag).await,
                }
            }
            Err(e) if e.is_not_found() => {
                self.store.remove_tag(key);
                return Err(ProxyError::upstream(Missing::Manifest)(e));
            }
            Err(e) => Err(ProxyError::upstream(Missing::Manifest)(e)),
        };
        // The HEAD, or the GET after it, failed in a way that stale-if-error covers: the last
        // known digest is served and the upstream left alone for a while.
        match fresh {
            Ok(m) => {
                if m.digest != rec.digest {
                    self.tag_moved(target, tag, &m);
                }
                Ok(Revalidation::Current(m))
            }
            Err(ProxyError::Upstream { missing, source }) => match backoff_for(&source) {
                Some(_) => {
                    up.backoff.trip_for(&source);
                    self.revalidated(target, "failed_served_stale");
                    Ok(Revalidation::Failed(source))
                }
                None => {
                    self.revalidated(target, "failed");
                    Err(ProxyError::Upstream { missing, source })
                }
            },
            Err(e) => {
                self.revalidated(target, "failed");
                Err(e)
            }
        }
    }
}
