//! `recv --shm`: the consumer side of the shared-memory contract (see `stream::shm` for the
//! producer side and the contract): opens the service with glstream's types only, waits on the
//! stream's frame event between frames, and says when the publisher has gone.

use std::thread;
use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use iceoryx2::service::builder::publish_subscribe::PublishSubscribeOpenError;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSub;

use crate::stream::shm::{
    FrameEvent, FrameHeader, LIVENESS_CHECK, RECEIVE_POLL, ShmError, open_reason, to_service_name,
    words,
};

/// A subscriber of a glstream shared-memory stream (`recv --shm`).
pub struct ShmSubscriber {
    service_name: String,
    /// Held, not used: the service and the subscriber live in this node.
    _node: Node<ipc::Service>,
    service: PubSub<ipc::Service, [u8], FrameHeader>,
    subscriber: Subscriber<ipc::Service, [u8], FrameHeader>,
    /// The stream's frame event (see [`FrameEvent`]), waited on between frames.
    listener: Option<Listener<ipc::Service>>,
    publisher_seen: bool,
}

/// One received frame: the header, and the payload in shared memory until it is dropped.
pub type ShmSample = Sample<ipc::Service, [u8], FrameHeader>;

impl ShmSubscriber {
    /// Opens `service` with only the payload and header types, retrying while it does not exist
    /// yet, until `deadline`.
    pub fn open(service: &str, deadline: Instant) -> Result<Self, ShmError> {
        let name = to_service_name(service)?;
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(|e| ShmError::Node(words(&e)))?;
        let opened = loop {
            match node
                .service_builder(&name)
                .publish_subscribe::<[u8]>()
                .user_header::<FrameHeader>()
                .open()
            {
                Ok(opened) => break opened,
                Err(PublishSubscribeOpenError::DoesNotExist) if Instant::now() < deadline => {
                    // Before the first frame only: the publisher has not created the service
                    // yet, and iceoryx2 has no event for a service coming into existence.
                    thread::sleep(Duration::from_millis(20));
                }
                Err(PublishSubscribeOpenError::DoesNotExist) => {
                    return Err(ShmError::Missing {
                        service: service.to_owned(),
                    });
                }
                Err(PublishSubscribeOpenError::IncompatibleTypes) => {
                    return Err(ShmError::Service {
                        service: service.to_owned(),
                        reason: "it carries other payload or header types (not a glstream \
                                 stream)"
                            .into(),
                    });
                }
                Err(e) => {
                    return Err(ShmError::Service {
                        service: service.to_owned(),
                        reason: open_reason(&e),
                    });
                }
            }
        };
        let subscriber =
            opened
                .subscriber_builder()
                .create()
                .map_err(|e| ShmError::Subscriber {
                    service: service.to_owned(),
                    reason: match e {
                        iceoryx2::port::subscriber::SubscriberCreateError::ExceedsMaxSupportedSubscribers => {
                            "it has as many subscribers as it admits (the publishing glstream's \
                             --max-clients, at most 8)"
                                .into()
                        }
                        other => words(&other),
                    },
                })?;
        let listener = FrameEvent::open(&node, &name)
            .and_then(|event| event.listener_builder().create().map_err(|e| words(&e)))
            .map_err(|e| log::warn!("shm: no frame event ({e}); polling for frames"))
            .ok();
        Ok(Self {
            service_name: service.to_owned(),
            _node: node,
            service: opened,
            subscriber,
            listener,
            publisher_seen: false,
        })
    }

    /// The next frame, waiting until `deadline`; `Ok(None)` when the stream has ended (its
    /// publisher is gone and every frame it sent was received) or the deadline passed: then
    /// [`ShmSubscriber::ended`] says which.
    pub fn next(&mut self, deadline: Instant) -> Result<Option<ShmSample>, ShmError> {
        loop {
            let publishers = self.service.dynamic_config().number_of_publishers();
            self.publisher_seen |= publishers > 0;
            let received = self
                .subscriber
                .receive()
                .map_err(|e| ShmError::Subscriber {
                    service: self.service_name.clone(),
                    reason: words(&e),
                })?;
            if received.is_some() {
                return Ok(received);
            }
            // Looked at before the receive: a publisher that sent its last frame and left
            // between the two is not taken for an ended stream with a frame still queued.
            let now = Instant::now();
            if self.ended_with(publishers) || now >= deadline {
                return Ok(None);
            }
            match &self.listener {
                // Woken by the next frame; the bound only catches a publisher killed without a
                // word (SIGKILL), whose departure nobody notifies.
                Some(listener) => {
                    let wait = (deadline - now).min(LIVENESS_CHECK);
                    let _ = listener.timed_wait(|_| {}, wait);
                }
                // A degraded fallback, warned about when the subscriber opened: only when the
                // frame event could not be opened (it admits no more listeners, or another
                // program publishes without one) is there nothing to wait on but time. With
                // the event, as normally, no frame is waited for by polling.
                None => thread::sleep(RECEIVE_POLL),
            }
        }
    }

    fn ended_with(&self, publishers: usize) -> bool {
        self.publisher_seen && publishers == 0
    }

    /// Whether the publisher has come and gone.
    pub fn ended(&self) -> bool {
        self.ended_with(self.service.dynamic_config().number_of_publishers())
    }
}
