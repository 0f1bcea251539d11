//! What the client's test binaries share.

use std::time::Duration;

use tickrelay_client::Event;
use tokio::sync::mpsc::Receiver;

/// Waits for the first event `pick` accepts.
pub async fn until<T>(events: &mut Receiver<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the expected event within 10 s")
            .expect("the client is running");
        if let Some(t) = pick(&event) {
            return t;
        }
    }
}
