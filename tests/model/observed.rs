//! What is compared of events and deliveries.
use presence::{Delivery, Event, EventKind, View};

/// An event as host listeners see it (own view), reduced to what the model predicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ev {
    pub ty: &'static str,
    pub user: String,
    pub online: bool,
    pub status: Option<String>,
    pub cid: Option<String>,
    pub watcher_count: Option<u32>,
    /// `connection.closed`: the connection and the reason.
    pub closed: Option<(u64, &'static str)>,
}

/// One delivery to one connection: the event as that connection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dv {
    pub ev: Ev,
    pub own_view: bool,
}

pub fn ev_of(event: &Event, view: View) -> Ev {
    let user = event.user().expect("the model sees events about users only");
    let (watcher_count, closed) = match &event.kind {
        EventKind::WatchingStart { watcher_count, .. } | EventKind::WatchingStop { watcher_count, .. } => {
            (Some(*watcher_count), None)
        }
        EventKind::ConnectionClosed { connection, reason, .. } => {
            (None, Some((connection.0, reason.as_str())))
        }
        _ => (None, None),
    };
    Ev {
        ty: event.type_name(),
        user: user.id.to_string(),
        online: user.online(view),
        status: user.status.as_deref().map(str::to_owned),
        cid: event.channel().map(|c| c.cid.to_string()),
        watcher_count,
        closed,
    }
}

pub fn dv_of(d: &Delivery) -> Dv {
    Dv { ev: ev_of(&d.event, d.view), own_view: d.view == View::Own }
}
