//! The consent backend `notify`: each question as a desktop notification with actions
//! (`org.freedesktop.Notifications` on the session bus), answered by clicking one.
//!
//! Where no session bus or no notification service is running, this backend is absent and
//! questions go to the others (the terminal, `cordon approve`). A sandboxed program cannot
//! reach the session bus (its view has a private `/run`, and abstract sockets belong to its
//! own network namespace), and only the service owning the notifications name is listened
//! to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use zbus::blocking::Proxy;

use super::{Broker, PendingRequest, Prompter, Scope};

const SERVICE: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

/// What a shown notification stands for.
struct Shown {
    request: PendingRequest,
    broker: Weak<Broker>,
}

/// Questions shown as desktop notifications.
pub struct NotifyPrompter {
    proxy: Proxy<'static>,
    /// Notification id → the question it shows.
    shown: Mutex<HashMap<u32, Shown>>,
    /// Itself, for the threads that show questions.
    me: Weak<NotifyPrompter>,
}

impl std::fmt::Debug for NotifyPrompter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyPrompter").finish_non_exhaustive()
    }
}

impl NotifyPrompter {
    /// Connects to the session bus and checks that a notification service is running;
    /// `None` (with why) where either is missing.
    ///
    /// # Errors
    ///
    /// Why notifications cannot be shown here.
    pub fn connect() -> Result<Arc<Self>, String> {
        // Every call bounded, the handshake too: a bus or a notification service that never
        // answers holds nothing.
        let connection = cordon_sandbox::systemd::connect(cordon_sandbox::systemd::Bus::Session)
            .map_err(|e| format!("no session bus to notify on: {e}"))?;
        let bus = zbus::blocking::fdo::DBusProxy::new(&connection)
            .map_err(|e| format!("the session bus does not answer: {e}"))?;
        let name = zbus::names::BusName::try_from(SERVICE).map_err(|e| e.to_string())?;
        if !bus.name_has_owner(name).unwrap_or(false) {
            return Err("no notification service is running on the session bus".into());
        }
        let proxy = Proxy::new(&connection, SERVICE, PATH, SERVICE)
            .map_err(|e| format!("cannot reach the notification service: {e}"))?;
        let prompter = Arc::new_cyclic(|me| Self {
            proxy,
            shown: Mutex::new(HashMap::new()),
            me: me.clone(),
        });
        // Signals of the service owning the name only (the proxy's match rule names it).
        let signals = prompter
            .proxy
            .receive_all_signals()
            .map_err(|e| format!("cannot listen to the notification service: {e}"))?;
        let listening = Arc::downgrade(&prompter);
        std::thread::Builder::new()
            .name("cordon-notify".into())
            .spawn(move || {
                for message in signals {
                    let Some(prompter) = listening.upgrade() else {
                        return;
                    };
                    prompter.signal(&message);
                }
            })
            .map_err(|e| format!("cannot listen to the notification service: {e}"))?;
        Ok(prompter)
    }

    fn signal(&self, message: &zbus::Message) {
        let header = message.header();
        let Some(member) = header.member() else {
            return;
        };
        match member.as_str() {
            "ActionInvoked" => {
                let Ok((id, action)) = message.body().deserialize::<(u32, String)>() else {
                    return;
                };
                let Some(shown) = self.shown.lock().ok().and_then(|mut s| s.remove(&id)) else {
                    return;
                };
                let (allow, scope) = match action.as_str() {
                    "once" => (true, Scope::Once),
                    "session" => (true, Scope::Session),
                    "minutes" => (true, Scope::Minutes(10)),
                    "always" => (true, Scope::Always),
                    _ => (false, Scope::Once),
                };
                if let Some(broker) = shown.broker.upgrade() {
                    if let Err(why) = broker.answer(&shown.request.id, allow, scope, "notify", None)
                    {
                        tracing::debug!("a notification's answer was not taken: {why}");
                    }
                }
            }
            "NotificationClosed" => {
                if let Ok((id, _reason)) = message.body().deserialize::<(u32, u32)>() {
                    // Dismissed without an answer: the question still waits elsewhere.
                    if let Ok(mut shown) = self.shown.lock() {
                        shown.remove(&id);
                    }
                }
            }
            _ => {}
        }
    }

    fn show(&self, request: &PendingRequest) -> zbus::Result<u32> {
        let offered = |kind: &str| request.scopes.iter().any(|s| s == kind);
        let mut actions: Vec<&str> = Vec::new();
        if !request.code {
            for (key, label) in [
                ("once", "Allow once"),
                ("session", "Allow for this session"),
                ("minutes", "Allow for 10 minutes"),
                ("always", "Always allow"),
            ] {
                if offered(key) {
                    actions.extend([key, label]);
                }
            }
        }
        actions.extend(["deny", "Deny"]);
        let mut body = String::new();
        if let Some(message) = &request.message {
            body.push_str(&plain(message));
            body.push('\n');
        }
        for reason in &request.why {
            body.push_str(&plain(reason));
            body.push('\n');
        }
        if request.code {
            body.push_str(
                "Needs a one-time code: type it on cordon's terminal, or `cordon approve ID --allow --code CODE`.",
            );
        }
        let summary = format!(
            "cordon: the program in session {} asks to {}",
            request.session,
            plain(&request.what)
        );
        let mut hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
        // Critical: it stays until answered or withdrawn.
        hints.insert("urgency", zbus::zvariant::Value::U8(2));
        let timeout_ms = i32::try_from(request.expires_in().as_millis()).unwrap_or(i32::MAX);
        self.proxy.call(
            "Notify",
            &(
                "cordon",
                0u32,
                "dialog-question",
                summary,
                body,
                actions,
                hints,
                timeout_ms,
            ),
        )
    }
}

impl Prompter for NotifyPrompter {
    fn prompt(&self, request: &PendingRequest, broker: Weak<Broker>) {
        // A D-Bus round trip: on a thread of its own, never the asking one.
        let (me, request) = (self.me.clone(), request.clone());
        std::thread::spawn(move || {
            let Some(me) = me.upgrade() else {
                return;
            };
            match me.show(&request) {
                Ok(id) => {
                    if let Ok(mut shown) = me.shown.lock() {
                        shown.insert(id, Shown { request, broker });
                    }
                }
                Err(err) => tracing::warn!("cannot show a question as a notification: {err}"),
            }
        });
    }

    fn withdraw(&self, id: &str) {
        let notification = self.shown.lock().ok().and_then(|mut shown| {
            let found = shown
                .iter()
                .find(|(_, s)| s.request.id == id)
                .map(|(n, _)| *n)?;
            shown.remove(&found);
            Some(found)
        });
        if let Some(notification) = notification {
            // Off the answering thread: closing is a courtesy, never a wait.
            let me = self.me.clone();
            std::thread::spawn(move || {
                if let Some(me) = me.upgrade() {
                    let _: zbus::Result<()> = me.proxy.call("CloseNotification", &(notification,));
                }
            });
        }
    }
}

/// `text` without control characters or markup (servers may render a subset of HTML):
/// what the program chose is shown as it is, never interpreted.
fn plain(text: &str) -> String {
    super::printable(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
