//! The sync engine: one run of the two-way sync described in the module documentation
//! (`home::caldav`), including the conflict rule (the server wins; the local side is kept in
//! the audit log).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::client::{DavClient, Precondition, RemoteObject, WriteOutcome};
use super::state::{self, ItemState};
use super::{blocking, ics, CaldavError, CalendarChange, LocalCalendar, SyncReport};
use crate::store::Store;

/// What the server says about one event since the last run.
#[derive(Debug, Clone)]
enum Remote {
    /// Created or edited there (the object as fetched).
    Changed(RemoteObject),
    /// Deleted there (the href it had).
    Gone(String),
}

/// The href for a new local event: `<collection><uid>.ics` when the UID is safe in a path
/// segment, else a stable hash of it (so a retried PUT still lands on the same href).
pub(super) fn href_for(collection: &str, uid: &str) -> String {
    let safe = !uid.is_empty()
        && uid.len() <= 200
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+~".contains(c))
        && !uid.starts_with('.');
    if safe {
        format!("{collection}{uid}.ics")
    } else {
        let digest = Sha256::digest(uid.as_bytes());
        format!("{collection}{}.ics", hex::encode(&digest[..16]))
    }
}

struct Run<'a> {
    client: &'a DavClient,
    store: &'a Store,
    calendar: &'a dyn LocalCalendar,
    collection: &'a str,
    report: SyncReport,
}

/// One sync run against the collection at `collection` (a decoded path ending in `/`).
pub(super) async fn run(
    client: &DavClient,
    store: &Store,
    calendar: &dyn LocalCalendar,
    collection: &str,
) -> Result<SyncReport, CaldavError> {
    state::claim(store, collection, false).await?;
    let mut st = state::load(store, collection).await?;
    let current = calendar
        .current_version()
        .await
        .map_err(CaldavError::Local)?;
    if st.watermark > current {
        // The local calendar is older than our state (restored from a backup or reset): what
        // the state says about local versions is meaningless, so merge from scratch.
        tracing::warn!(
            watermark = st.watermark,
            current,
            "the local calendar is behind the caldav sync state; starting a full merge"
        );
        state::claim(store, collection, true).await?;
        st = state::load(store, collection).await?;
    }

    let coll = collection.to_owned();
    let listing = blocking(client, move |c| c.list(&coll)).await?;

    // Local side: the newest change per UID that the server has not seen yet.
    let changes = calendar
        .changes_since(st.watermark)
        .await
        .map_err(CaldavError::Local)?;
    let mut watermark = st.watermark;
    let mut local: HashMap<String, CalendarChange> = HashMap::new();
    for ch in changes {
        watermark = watermark.max(ch.version);
        let synced = st.items.get(&ch.uid).map(|s| s.local_version);
        if synced.is_some_and(|v| ch.version <= v) {
            continue; // our own apply_remote, or already pushed
        }
        if local
            .get(&ch.uid)
            .is_none_or(|prev| prev.version < ch.version)
        {
            local.insert(ch.uid.clone(), ch);
        }
    }

    // Remote side: new hrefs, changed etags, vanished hrefs.
    let by_href: HashMap<&str, &ItemState> =
        st.items.values().map(|i| (i.href.as_str(), i)).collect();
    let mut listed_etag: HashMap<String, Option<String>> = HashMap::new();
    let mut to_fetch = Vec::new();
    for e in &listing.entries {
        listed_etag.insert(e.href.clone(), e.etag.clone());
        match by_href.get(e.href.as_str()) {
            Some(item) if item.etag == e.etag => {}
            _ => to_fetch.push(e.href.clone()),
        }
    }
    let mut remote: HashMap<String, Remote> = HashMap::new();
    let mut report = SyncReport::default();
    if !to_fetch.is_empty() {
        let coll = collection.to_owned();
        let fetched = blocking(client, move |c| c.multiget(&coll, &to_fetch)).await?;
        for mut obj in fetched {
            let Some(uid) = ics::uid_of(&obj.ics) else {
                tracing::warn!(href = %obj.href, "skipping a calendar object without a UID");
                report.skipped += 1;
                continue;
            };
            if obj.etag.is_none() {
                obj.etag = listed_etag.get(&obj.href).cloned().flatten();
            }
            remote.insert(uid, Remote::Changed(obj));
        }
    }
    let listed: HashSet<&str> = listing.entries.iter().map(|e| e.href.as_str()).collect();
    for item in st.items.values() {
        if !listed.contains(item.href.as_str()) {
            remote
                .entry(item.uid.clone())
                .or_insert_with(|| Remote::Gone(item.href.clone()));
        }
    }

    let mut r = Run {
        client,
        store,
        calendar,
        collection,
        report,
    };
    let uids: BTreeSet<String> = local.keys().chain(remote.keys()).cloned().collect();
    for uid in uids {
        let item = st.items.get(&uid);
        match (local.remove(&uid), remote.remove(&uid)) {
            (Some(l), None) => r.push(l, item).await?,
            (None, Some(rem)) => r.pull(&uid, rem).await?,
            (Some(l), Some(rem)) => r.both(l, rem).await?,
            (None, None) => {}
        }
    }
    state::finish(store, watermark, listing.ctag).await?;
    Ok(r.report)
}

impl Run<'_> {
    /// A local change the server has not seen.
    async fn push(
        &mut self,
        l: CalendarChange,
        item: Option<&ItemState>,
    ) -> Result<(), CaldavError> {
        match (&l.ics, item) {
            (Some(text), _) => {
                let href =
                    item.map_or_else(|| href_for(self.collection, &l.uid), |i| i.href.clone());
                let pre = match item {
                    None => Precondition::Create,
                    Some(ItemState { etag: Some(e), .. }) => Precondition::Replace(e.clone()),
                    Some(_) => Precondition::None,
                };
                let (h, t) = (href.clone(), text.clone());
                let outcome = blocking(self.client, move |c| c.put(&h, &t, &pre)).await?;
                match outcome {
                    WriteOutcome::Done(etag) => {
                        let etag = match etag {
                            Some(e) => Some(e),
                            None => {
                                let h = href.clone();
                                blocking(self.client, move |c| c.etag(&h)).await?
                            }
                        };
                        state::upsert(
                            self.store,
                            ItemState {
                                uid: l.uid.clone(),
                                href,
                                etag,
                                local_version: l.version,
                            },
                        )
                        .await?;
                        self.report.pushed += 1;
                    }
                    WriteOutcome::PreconditionFailed | WriteOutcome::Gone => {
                        let rem = self.fetch(&href).await?;
                        self.both(l, rem).await?;
                    }
                }
            }
            // Created and deleted between two runs: it never reached the server.
            (None, None) => {}
            (None, Some(i)) => {
                let (h, e) = (i.href.clone(), i.etag.clone());
                let outcome = blocking(self.client, move |c| c.delete(&h, e.as_deref())).await?;
                match outcome {
                    WriteOutcome::Done(_) | WriteOutcome::Gone => {
                        state::remove(self.store, &l.uid).await?;
                        self.report.deleted_remote += 1;
                    }
                    WriteOutcome::PreconditionFailed => {
                        let rem = self.fetch(&i.href).await?;
                        self.both(l, rem).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The server's current copy of `href`, after a 412.
    async fn fetch(&self, href: &str) -> Result<Remote, CaldavError> {
        let h = href.to_owned();
        Ok(match blocking(self.client, move |c| c.get(&h)).await? {
            Some(obj) => Remote::Changed(obj),
            None => Remote::Gone(href.to_owned()),
        })
    }

    /// A server change the local calendar has not seen.
    async fn pull(&mut self, uid: &str, rem: Remote) -> Result<(), CaldavError> {
        match rem {
            Remote::Changed(obj) => {
                let version = self
                    .calendar
                    .apply_remote(uid, Some(&obj.ics))
                    .await
                    .map_err(CaldavError::Local)?;
                state::upsert(
                    self.store,
                    ItemState {
                        uid: uid.to_owned(),
                        href: obj.href,
                        etag: obj.etag,
                        local_version: version,
                    },
                )
                .await?;
                self.report.pulled += 1;
            }
            Remote::Gone(_) => {
                self.calendar
                    .apply_remote(uid, None)
                    .await
                    .map_err(CaldavError::Local)?;
                state::remove(self.store, uid).await?;
                self.report.deleted_local += 1;
            }
        }
        Ok(())
    }

    /// Changed on both sides: agree when the content is the same, else the server wins and
    /// the local side is kept in the audit log.
    async fn both(&mut self, l: CalendarChange, rem: Remote) -> Result<(), CaldavError> {
        match (&l.ics, &rem) {
            (None, Remote::Gone(_)) => {
                state::remove(self.store, &l.uid).await?;
                return Ok(());
            }
            (Some(mine), Remote::Changed(obj)) if ics::same_content(mine, &obj.ics) => {
                state::upsert(
                    self.store,
                    ItemState {
                        uid: l.uid.clone(),
                        href: obj.href.clone(),
                        etag: obj.etag.clone(),
                        local_version: l.version,
                    },
                )
                .await?;
                return Ok(());
            }
            _ => {}
        }
        let (href, etag, server) = match &rem {
            Remote::Changed(obj) => (obj.href.clone(), obj.etag.clone(), "changed"),
            Remote::Gone(h) => (h.clone(), None, "deleted"),
        };
        tracing::info!(uid = %l.uid, server, "caldav conflict: the server's version wins");
        state::record_conflict(
            self.store,
            &l.uid,
            json!({
                "rule": "server_wins",
                "local_version": l.version,
                "local_ics": l.ics,
                "server": server,
                "href": href,
                "etag": etag,
            }),
        )
        .await?;
        let before = self.report;
        self.pull(&l.uid, rem).await?;
        self.report = SyncReport {
            conflicts: before.conflicts + 1,
            ..before
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_come_from_the_uid_or_a_stable_hash() {
        assert_eq!(href_for("/c/", "abc-1@host"), "/c/abc-1@host.ics");
        let odd = href_for("/c/", "a/b c");
        assert!(odd.starts_with("/c/") && odd.ends_with(".ics") && !odd.contains(' '));
        assert_eq!(odd, href_for("/c/", "a/b c"));
        assert_ne!(odd, href_for("/c/", "a/b d"));
        assert_ne!(href_for("/c/", ".."), "/c/...ics");
    }
}
