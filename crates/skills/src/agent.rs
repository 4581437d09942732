//! `cordon:agent`: what WASI lacks and desktop agents need (`wit/agent.wit`), each call
//! decided. Today: the clipboard, under `data.cordon.clipboard`, on the desktop's real
//! clipboard (X11, or Wayland's data-control protocol) where there is a display.

use serde_json::json;
use wasmtime::component::{HasSelf, Linker};

use crate::runtime::Host;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "agent",
});

/// The largest text a skill may put on the clipboard or read from it.
pub const MAX_CLIPBOARD_BYTES: usize = 1 << 20;

/// Adds `cordon:agent` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    cordon::agent::clipboard::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)
}

impl Host {
    /// Decides `action` on the clipboard; the error is the person-readable refusal.
    fn decide_clipboard(&mut self, action: &str, bytes: Option<usize>) -> Result<(), String> {
        let decision = self
            .gate
            .decide("clipboard", action, json!({ "bytes": bytes }));
        if decision.allow {
            Ok(())
        } else {
            Err(format!("denied by policy: {}", decision.reasons.join("; ")))
        }
    }

    /// The desktop's clipboard, opened at first use.
    fn clipboard(&mut self) -> Result<&mut arboard::Clipboard, String> {
        if self.clipboard.is_none() {
            let display = ["DISPLAY", "WAYLAND_DISPLAY"]
                .iter()
                .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
            if !display {
                return Err(
                    "no clipboard here: no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
                        .into(),
                );
            }
            let opened = arboard::Clipboard::new().map_err(|err| {
                format!("no clipboard here (is there a display? DISPLAY or WAYLAND_DISPLAY): {err}")
            })?;
            self.clipboard = Some(opened);
        }
        self.clipboard
            .as_mut()
            .ok_or_else(|| "no clipboard here".to_owned())
    }
}

impl cordon::agent::clipboard::Host for Host {
    fn read_text(&mut self) -> Result<String, String> {
        // Without a clipboard there is nothing to decide.
        self.clipboard()?;
        self.decide_clipboard("read", None)?;
        let text = self
            .clipboard()?
            .get_text()
            .map_err(|e| format!("cannot read the clipboard: {e}"))?;
        if text.len() > MAX_CLIPBOARD_BYTES {
            return Err(format!(
                "the clipboard holds {} bytes, more than the {MAX_CLIPBOARD_BYTES} a skill may read",
                text.len()
            ));
        }
        Ok(text)
    }

    fn write_text(&mut self, text: String) -> Result<(), String> {
        if text.len() > MAX_CLIPBOARD_BYTES {
            return Err(format!(
                "{} bytes is more than the {MAX_CLIPBOARD_BYTES} a skill may put on the clipboard",
                text.len()
            ));
        }
        self.clipboard()?;
        self.decide_clipboard("write", Some(text.len()))?;
        self.clipboard()?
            .set_text(text)
            .map_err(|e| format!("cannot write the clipboard: {e}"))
    }
}
