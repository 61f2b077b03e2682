//! Single-flight: callers that ask for the same key while a first caller's work is in
//! flight wait for that work's answer instead of doing it again. The key's life ends with
//! its work: a caller that comes after the answer starts new work.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// Where a follower waits for the leader's answer.
pub(crate) type Waiter<V> = watch::Receiver<Option<Arc<V>>>;

/// The work in flight, by key.
pub(crate) struct SingleFlight<K, V> {
    in_flight: Arc<Mutex<HashMap<K, Waiter<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            in_flight: Arc::default(),
        }
    }
}

/// What [`SingleFlight::join`] makes of a caller.
pub(crate) enum Joined<K: Hash + Eq, V> {
    /// Nobody works on this key: the caller does, and publishes the answer.
    Lead(Publisher<K, V>),
    /// Work is in flight: the caller waits for it.
    Follow(Waiter<V>),
}

/// The leader's handle: publishes the answer and retires the key. Dropped without
/// publishing, it retires the key all the same and the followers get no answer.
pub(crate) struct Publisher<K: Hash + Eq, V> {
    key: K,
    tx: watch::Sender<Option<Arc<V>>>,
    in_flight: Arc<Mutex<HashMap<K, Waiter<V>>>>,
}

fn lock<K, V>(map: &Mutex<HashMap<K, Waiter<V>>>) -> MutexGuard<'_, HashMap<K, Waiter<V>>> {
    // The map is only ever inserted into or removed from whole: a panic elsewhere leaves
    // nothing half-done in it.
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K: Hash + Eq + Clone, V> SingleFlight<K, V> {
    /// Leads the work for `key`, or follows the work already in flight for it.
    pub(crate) fn join(&self, key: K) -> Joined<K, V> {
        let mut map = lock(&self.in_flight);
        if let Some(waiter) = map.get(&key) {
            return Joined::Follow(waiter.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Joined::Lead(Publisher {
            key,
            tx,
            in_flight: Arc::clone(&self.in_flight),
        })
    }
}

impl<K: Hash + Eq, V> Publisher<K, V> {
    /// Hands `answer` to every follower.
    pub(crate) fn publish(self, answer: Arc<V>) {
        // Retire the key first: a caller that arrives after this answer is new work.
        lock(&self.in_flight).remove(&self.key);
        let _ = self.tx.send(Some(answer));
    }
}

impl<K: Hash + Eq, V> Drop for Publisher<K, V> {
    fn drop(&mut self) {
        // Published or not, the key must not outlive its work.
        let mut map = lock(&self.in_flight);
        if map
            .get(&self.key)
            .is_some_and(|waiter| waiter.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

/// Waits for the leader's answer; None when the leader went away without one.
pub(crate) async fn wait<V>(mut waiter: Waiter<V>) -> Option<Arc<V>> {
    let answer = waiter.wait_for(Option::is_some).await.ok()?;
    answer.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_answer_and_the_key_retires_with_it() {
        let flight = SingleFlight::<u64, &'static str>::default();
        let Joined::Lead(leader) = flight.join(7) else {
            panic!("the first caller leads");
        };
        let Joined::Follow(follower) = flight.join(7) else {
            panic!("a second caller follows");
        };
        assert!(
            matches!(flight.join(8), Joined::Lead(_)),
            "another key is other work"
        );
        leader.publish(Arc::new("answer"));
        assert_eq!(wait(follower).await.as_deref(), Some(&"answer"));
        assert!(
            matches!(flight.join(7), Joined::Lead(_)),
            "after the answer, new work"
        );
    }

    #[tokio::test]
    async fn a_leader_gone_without_an_answer_leaves_followers_none_and_retires_the_key() {
        let flight = SingleFlight::<u64, u32>::default();
        let Joined::Lead(leader) = flight.join(1) else {
            panic!("the first caller leads");
        };
        let Joined::Follow(follower) = flight.join(1) else {
            panic!("a second caller follows");
        };
        drop(leader);
        assert_eq!(wait(follower).await, None);
        assert!(matches!(flight.join(1), Joined::Lead(_)));
    }
}
