//! `cordon mcp`: an MCP server in the sandbox, with a decision on every tool call.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use cordon_supervisor::mcp::{Gateway, Pins, Server, Upstream};
use cordon_supervisor::session::remote::{self, RemoteRequest};
use cordon_supervisor::session::skill::{self, DirRequest, SkillRequest};
use cordon_supervisor::session::{Ended, LaunchError, LaunchRequest, Running, Session};

use super::exec::{launch_error, refused, utf8_args};
use super::shared::{load_config, ConsentArgs, GrantArgs, PolicyArgs};
use crate::report::CliError;
use crate::{Cli, Exit};

/// Run an MCP server in cordon's sandbox, deciding every tool call it is asked
///
/// Configure an MCP client (Claude Desktop, Cursor, VS Code, Codex...) to start cordon in
/// place of the server: `"command": "cordon", "args": ["mcp", "--", "npx", "some-server"]`.
/// cordon starts the server as `cordon exec` would (its own grants, its egress through the
/// proxy, its session in `cordon ps`), and relays the stdio transport's JSON-RPC messages in
/// both directions, deciding under the policy's `data.cordon.tool`:
///
///   tools/call        action `call`: the server's name, command and executable's digest,
///                     the tool, its arguments, its definition; recorded with the session's
///                     id before the server sees it, its result's size recorded after
///   resources/read    action `read_resource` (the URI); prompts/get: `get_prompt`
///   listings          tools, resources and prompts the policy refuses are not shown
///   other methods     a client method outside the MCP specification (`method`), and what
///                     the server asks the client (`server_request`: sampling, elicitation,
///                     roots), pass only when the policy allows them
///
/// A denied call is answered with a tool error the model can read ("denied by policy: ...").
/// Obligations are carried out: `consent` asks the person (answer with `cordon approve`, or
/// a desktop notification) while other messages keep flowing; `redact` removes secrets
/// from what a tool is sent and from what it returns; `limit` caps calls a minute.
///
/// The default policy allows every tool except those `settings.tool.deny` names
/// ("SERVER/TOOL" patterns, e.g. "*/delete_*"), asks about those `settings.tool.ask`
/// names, redacts private keys, cloud keys, tokens, JWTs and URL credentials from arguments
/// and results, and allows 600 calls a minute to each tool.
///
/// Each tool's definition (name, title, description, schemas, annotations) is pinned by its
/// digest the first time a listing shows it ($XDG_DATA_HOME/cordon/mcp-pins.json). A
/// definition that changes later (a "rug pull", or a description rewritten to instruct the
/// model) is hidden and its calls refused until you accept it with --accept-changed
/// SERVER/TOOL. A tool never listed in the session cannot be called.
///
/// With --skill, the server is a WebAssembly component (a WASI 0.2 library built for
/// `wasm32-wasip2`) run in this process: each function it exports (and each function of the
/// interfaces it exports) is a tool, named `FUNCTION` or `INTERFACE.FUNCTION`, its
/// parameters the tool's arguments (a JSON Schema from its WIT types), its result the
/// tool's (`result<T, E>` returning `err` is a tool error). Each call is decided as above,
/// then runs in a fresh instance under the policy's limits (memory, processor time, time),
/// every file it opens and request it makes decided by data.cordon.file and data.cordon.net.
///
/// Exit status: the server's; 125 when cordon refused or could not start it; with --skill,
/// 126 when the file is not a component exporting functions, 127 when it is not found.
///
/// Examples:
///   cordon mcp -- npx -y @modelcontextprotocol/server-filesystem .
///   cordon mcp --name notes --allow-read ~/notes -- python3 notes_server.py
///   cordon mcp --consent notify -- uvx mcp-server-git   # asks on the desktop
///   cordon mcp --allow-read ~/notes --skill textkit.wasm
#[derive(Debug, Clone, Args)]
#[command(verbatim_doc_comment)]
pub struct McpCommand {
    #[command(flatten)]
    policy: PolicyArgs,

    /// The server's name in decisions and records [default: the program's file name]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    #[command(flatten)]
    grants: GrantArgs,

    #[command(flatten)]
    consent: ConsentArgs,

    /// Run even when a kernel feature the policy requires is missing (recorded)
    #[arg(long)]
    allow_degraded: bool,

    /// Do not journal what the server changes in its writable trees
    #[arg(long)]
    no_journal: bool,

    /// Accept the current definition of SERVER/TOOL in place of its pin, once you have read
    /// it (repeat for several)
    #[arg(long, value_name = "SERVER/TOOL")]
    accept_changed: Vec<String>,

    /// Serve the functions a WebAssembly component exports as tools, in place of a server
    /// program: each call decided as a server's are, then run by the skill runtime in an
    /// instance of its own (--allow-read/--allow-write give it directories, seen by their
    /// paths; --allow-net hosts; each file it opens and request it makes decided again)
    #[arg(long, value_name = "SKILL.wasm", conflicts_with = "command")]
    skill: Option<PathBuf>,

    /// Serve MCP's Streamable HTTP transport on ADDRESS (a loopback address and port, e.g.
    /// 127.0.0.1:8931; port 0 picks one) instead of stdio: POST, GET and DELETE on /mcp, each
    /// client session starting a server of its own. Every request must carry `Authorization:
    /// Bearer TOKEN`: the token is printed when cordon starts, or taken from CORDON_MCP_TOKEN
    #[arg(long, value_name = "ADDRESS", conflicts_with_all = ["skill", "upstream"])]
    listen: Option<String>,

    /// Front a remote MCP server over Streamable HTTP (http:// or https://) in place of a
    /// server program: every message decided as a local server's are, and every connection
    /// to it made through cordon's egress proxy, decided under data.cordon.net and recorded
    /// (its host is asked for as --allow-net would). A credential goes in
    /// CORDON_MCP_UPSTREAM_AUTHORIZATION (sent as the Authorization header, e.g. `Bearer
    /// TOKEN`), never in the URL, whose query records and listings do not show
    #[arg(long, value_name = "URL", conflicts_with_all = ["skill", "command"])]
    upstream: Option<String>,

    /// The server's program and its arguments
    #[arg(
        required_unless_present_any = ["skill", "upstream"],
        trailing_var_arg = true,
        value_name = "CMD"
    )]
    command: Vec<OsString>,
}

/// Programs that start a server named by an argument: `npx -y @scope/server-x .`,
/// `python3 server.py`, `uvx mcp-server-git`, `docker run ... image`.
const LAUNCHERS: &[&str] = &[
    "npx", "pnpx", "bunx", "uvx", "uv", "pipx", "node", "deno", "bun", "python", "python3", "sh",
    "bash", "docker", "podman", "java",
];

/// Script names too common to tell one server from another: its directory goes with them
/// (`notes-server` for `python3 ~/notes/server.py`), so that two projects' `server.py`s do
/// not share pins and remembered answers.
const GENERIC: &[&str] = &[
    "server",
    "main",
    "index",
    "app",
    "__main__",
    "cli",
    "run",
    "start",
    "serve",
    "mcp",
    "mcp_server",
    "mcp-server",
];

/// The server's name when `--name` gives none: the program's file name, or for a launcher
/// the first argument that is not an option (`python -m pkg` gives `pkg`), without its
/// directory, package scope or extension; `server-filesystem` for
/// `npx -y @modelcontextprotocol/server-filesystem .`. A generic script name takes its
/// directory's (`cwd`'s for a bare file name) in front.
fn server_name(command: &[String], cwd: &std::path::Path) -> String {
    let base = |text: &str| -> String {
        let last = text.rsplit('/').next().unwrap_or(text);
        let stem = last.split_once('@').map_or(last, |(name, _)| name);
        let stem = stem
            .rsplit_once('.')
            .filter(|(name, ext)| !name.is_empty() && ext.chars().all(char::is_alphanumeric))
            .map_or(stem, |(name, _)| name);
        if stem.is_empty() {
            text.to_owned()
        } else {
            stem.to_owned()
        }
    };
    let program = base(&command[0]);
    let launcher = LAUNCHERS
        .iter()
        .any(|l| program == *l || program.starts_with("python3."));
    if !launcher {
        return program;
    }
    let mut args = command[1..].iter();
    while let Some(arg) = args.next() {
        if arg == "-m" || arg == "--from" {
            if let Some(module) = args.next() {
                return base(module);
            }
        } else if !arg.starts_with('-') && arg != "run" && arg != "exec" {
            let name = base(arg);
            if !GENERIC.contains(&name.as_str()) {
                return name;
            }
            let trimmed = arg.trim_end_matches('/');
            let dir = match trimmed.rsplit_once('/') {
                Some((dir, _)) => dir
                    .rsplit('/')
                    .next()
                    .unwrap_or(dir)
                    .trim_start_matches('@')
                    .to_owned(),
                None => cwd
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            return if dir.is_empty() || dir == "." || dir == ".." {
                name
            } else {
                format!("{dir}-{name}")
            };
        }
    }
    program
}

impl McpCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let mut config = load_config(cli, &self.policy).map_err(refused)?;
        if self.no_journal {
            config.journal.enabled = Some(false);
        }
        self.consent.apply(&mut config);
        let pins_path = dirs::data_dir()
            .map(|dir| dir.join("cordon").join("mcp-pins.json"))
            .ok_or_else(|| {
                refused(anyhow::anyhow!(
                    "no data directory to keep the tool pins in"
                ))
            })?;
        let pins = Pins::open(&pins_path).map_err(|why| refused(anyhow::anyhow!(why)))?;
        if let Some(path) = &self.skill {
            return self.serve_skill(cli, config, path, pins);
        }
        if let Some(url) = &self.upstream {
            return self.front_upstream(config, url, pins);
        }
        let command = utf8_args(&self.command)?;
        let cwd = std::env::current_dir()
            .context("cannot read the current directory")
            .map_err(refused)?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| server_name(&command, &cwd));
        tracing::info!("deciding for MCP server `{name}` (`--name` names it otherwise)");
        if let Some(address) = &self.listen {
            return self.listen(address, config, command, cwd, name, pins_path);
        }
        let (mut running, gateway) = self.start(config, command, cwd, name, pins)?;
        let (server_in, server_out) = running
            .take_stdio()
            .ok_or_else(|| refused(anyhow::anyhow!("the server's input and output are missing")))?;
        let ended = cordon_supervisor::mcp::relay(
            gateway,
            std::io::stdin(),
            std::io::stdout(),
            server_in,
            server_out,
        );
        let ended = finish(running, ended).map_err(launch_error)?;
        super::shared::report_journaled(cli, &ended.id, ended.journaled, &ended.left_out);
        Ok(Exit::Code(u8::try_from(ended.exit_code).unwrap_or(255)))
    }

    /// Launches the server as a session, and the gateway that decides for it; a policy that
    /// refuses to relay it stops it.
    fn start(
        &self,
        config: cordon_supervisor::CordonConfig,
        command: Vec<String>,
        cwd: PathBuf,
        name: String,
        pins: Pins,
    ) -> Result<(Running, Arc<Gateway>), CliError> {
        let mut request = LaunchRequest::new(config, command.clone(), cwd.clone());
        self.grants.ask(&mut request);
        request.allow_degraded = self.allow_degraded;
        request.forward_signals = self.listen.is_none();
        request.front_end = "mcp".into();
        request.piped = true;
        request.decides = &["sandbox", "net", "tool"];
        let running = Session::launch(request).map_err(launch_error)?;
        let path = std::env::var("PATH").unwrap_or_default();
        let server = Server::new(name, command, &cwd, &path);
        match self.gateway(
            running.supervisor(),
            server,
            pins,
            running.consent(),
            "server",
        ) {
            Ok(gateway) => Ok((running, gateway)),
            Err(why) => {
                let _ = running.signal(libc::SIGKILL);
                let _ = running.wait();
                Err(refused(anyhow::anyhow!(why)))
            }
        }
    }

    /// The gateway deciding for `server` (a `what`: server, skill) under `supervisor`,
    /// asking through `consent`; the reason, ready to show, when the policy refuses to relay
    /// it at all.
    fn gateway(
        &self,
        supervisor: Arc<cordon_supervisor::Supervisor>,
        server: Server,
        pins: Pins,
        consent: Arc<cordon_supervisor::consent::Broker>,
        what: &str,
    ) -> Result<Arc<Gateway>, String> {
        let gateway = Gateway::new(supervisor, server, pins)
            .accepting(self.accept_changed.clone())
            .asking(consent);
        match gateway.refusal() {
            Some(why) => Err(format!(
                "the policy refuses to relay MCP {what} `{}`: {why}",
                gateway.server_name()
            )),
            None => Ok(Arc::new(gateway)),
        }
    }

    /// `--listen`: the Streamable HTTP transport, a server launched for each session.
    fn listen(
        &self,
        address: &str,
        config: cordon_supervisor::CordonConfig,
        command: Vec<String>,
        cwd: PathBuf,
        name: String,
        pins_path: PathBuf,
    ) -> Result<Exit, CliError> {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("cannot listen on {address}"))
            .map_err(refused)?;
        let bound = listener
            .local_addr()
            .context("cannot read the address listened on")
            .map_err(refused)?;
        if !bound.ip().is_loopback() {
            return Err(refused(anyhow::anyhow!(
                "{bound} is not a loopback address: cordon serves MCP over HTTP on 127.0.0.1 or ::1 only"
            )));
        }
        let (token, given) = match std::env::var("CORDON_MCP_TOKEN") {
            Ok(token) if token.len() >= 16 => (token, true),
            Ok(_) => {
                return Err(refused(anyhow::anyhow!(
                    "CORDON_MCP_TOKEN must be at least 16 characters"
                )))
            }
            Err(_) => (
                cordon_supervisor::mcp::http::secret()
                    .map_err(|why| refused(anyhow::anyhow!(why)))?,
                false,
            ),
        };
        let shown = if given {
            "the token in CORDON_MCP_TOKEN".to_owned()
        } else {
            token.clone()
        };
        let told = {
            use std::io::Write;
            writeln!(
                std::io::stderr().lock(),
                "cordon: MCP server `{name}` over HTTP at http://{bound}{}; clients send `Authorization: Bearer {shown}`; each session starts its own server",
                cordon_supervisor::mcp::http::PATH
            )
        };
        // A port or a token that cordon chose and could not tell would leave it serving
        // where no one can reach it.
        let chosen = address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none_or(|port| port == 0)
            || !given;
        if let (Err(err), true) = (told, chosen) {
            return Err(anyhow::anyhow!(
                "cannot tell the clients' address and token: standard error cannot be written ({err})"
            )
            .into());
        }
        // Each session's server is launched as `cordon mcp` would for stdio.
        let this = self.clone();
        let launch: cordon_supervisor::mcp::http::Launch = Arc::new(move || {
            let pins = Pins::open(&pins_path)?;
            let (mut running, gateway) = this
                .start(
                    config.clone(),
                    command.clone(),
                    cwd.clone(),
                    name.clone(),
                    pins,
                )
                .map_err(|err| err.to_string())?;
            let (server_in, server_out) = running
                .take_stdio()
                .ok_or("the server's input and output are missing")?;
            Ok(cordon_supervisor::mcp::http::Started {
                gateway,
                server_in: Box::new(server_in),
                server_out: Box::new(server_out),
                finish: Box::new(move |ended| match finish(running, ended) {
                    Ok(ended) => {
                        tracing::info!("session {} ended with status {}", ended.id, ended.exit_code)
                    }
                    Err(err) => tracing::warn!("a session's server: {err}"),
                }),
            })
        });
        cordon_supervisor::mcp::http::serve(listener, token, launch)
            .context("cannot serve MCP over HTTP")
            .map_err(refused)?;
        Ok(Exit::Code(0))
    }

    /// `--upstream`: a remote server fronted, in a session of its own whose egress proxy
    /// every connection to it goes through.
    fn front_upstream(
        &self,
        config: cordon_supervisor::CordonConfig,
        url: &str,
        pins: Pins,
    ) -> Result<Exit, CliError> {
        let cwd = std::env::current_dir()
            .context("cannot read the current directory")
            .map_err(refused)?;
        let (upstream, host) = Upstream::parse(url).map_err(|why| refused(anyhow::anyhow!(why)))?;
        let host = cordon_egress::normalize_allow_entry(&host)
            .map_err(|why| refused(anyhow::anyhow!("`{url}`: {why}")))?;
        // The host and port: two servers on one host share no pins or remembered answers.
        let name = self.name.clone().unwrap_or_else(|| host.clone());
        let mut net = vec![host];
        net.extend(self.grants.allow_net.iter().cloned());
        let shown = cordon_supervisor::mcp::shown_url(url);
        let mut request = RemoteRequest::new(config, shown, net, cwd);
        request.decides = &["net", "tool"];
        request.front_end = "mcp".into();
        let mut refusal = None;
        remote::serve(request, |remote| {
            let server = Server::remote(name, url);
            let supervisor = Arc::clone(remote.supervisor());
            let gateway = self
                .gateway(supervisor, server, pins, remote.consent(), "server")
                .inspect_err(|why| refusal = Some(why.clone()))?;
            cordon_supervisor::mcp::relay_upstream(
                gateway,
                remote,
                &upstream,
                std::io::stdin(),
                std::io::stdout(),
            )
            .map(|_| ())
            .map_err(|err| format!("the relay ended: {err}"))
        })
        .map_err(|err| match refusal.take() {
            Some(why) => refused(anyhow::anyhow!(why)),
            None => launch_error(err),
        })?;
        Ok(Exit::Code(0))
    }

    /// `--skill`: the component's functions served as tools, in a skill session.
    fn serve_skill(
        &self,
        cli: &Cli,
        config: cordon_supervisor::CordonConfig,
        path: &std::path::Path,
        pins: Pins,
    ) -> Result<Exit, CliError> {
        let cwd = std::env::current_dir()
            .context("cannot read the current directory")
            .map_err(refused)?;
        let mut request = SkillRequest::new(config, path.to_path_buf(), Vec::new(), cwd);
        let dir = |host: &PathBuf, writable| DirRequest {
            host: host.clone(),
            guest: None,
            writable,
        };
        request.dirs = (self.grants.allow_read.iter().map(|p| dir(p, false)))
            .chain(self.grants.allow_write.iter().map(|p| dir(p, true)))
            .collect();
        request.net.clone_from(&self.grants.allow_net);
        request.keep_env.clone_from(&self.grants.keep_env);
        request.stdin = false;
        request.front_end = "mcp".into();
        let mut refusal = None;
        let ended = skill::serve(request, |functions| {
            let name = self
                .name
                .clone()
                .unwrap_or_else(|| functions.skill().name().to_owned());
            tracing::info!("deciding for MCP skill `{name}` (`--name` names it otherwise)");
            let server = Server::skill(name, functions.skill());
            let supervisor = Arc::clone(functions.supervisor());
            let gateway = self
                .gateway(supervisor, server, pins, functions.consent(), "skill")
                .inspect_err(|why| refusal = Some(why.clone()))?;
            cordon_supervisor::mcp::relay_skill(
                gateway,
                functions,
                std::io::stdin(),
                std::io::stdout(),
            )
            .map(|_| ())
            .map_err(|err| format!("the relay ended: {err}"))
        })
        .map_err(launch_error)?;
        if let Some(why) = refusal {
            return Err(refused(anyhow::anyhow!(why)));
        }
        super::shared::report_journaled(cli, &ended.id, ended.journaled, &[]);
        Ok(Exit::Code(u8::try_from(ended.exit.code).unwrap_or(1)))
    }
}

/// Ends a server once its relay has: stopped when it did not end by itself, then waited for.
fn finish(running: Running, ended: std::io::Result<bool>) -> Result<Ended, LaunchError> {
    match ended {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("the server did not end when its client left; stopping it");
            let _ = running.signal(libc::SIGKILL);
        }
        Err(err) => {
            tracing::warn!("the relay ended: {err}; stopping the server");
            let _ = running.signal(libc::SIGKILL);
        }
    }
    running.wait()
}

#[cfg(test)]
mod tests {
    use super::server_name;

    fn name(command: &str) -> String {
        let cwd = std::path::Path::new("/home/alice/notes");
        server_name(
            &command.split(' ').map(str::to_owned).collect::<Vec<_>>(),
            cwd,
        )
    }

    #[test]
    fn a_launcher_is_not_the_server() {
        assert_eq!(
            name("npx -y @modelcontextprotocol/server-filesystem ."),
            "server-filesystem"
        );
        assert_eq!(name("/usr/bin/python3 server.py"), "notes-server");
        assert_eq!(name("python3 /srv/mail/main.py"), "mail-main");
        assert_eq!(name("npx -y @acme/server"), "acme-server");
        assert_eq!(name("node build/index.js"), "build-index");
        assert_eq!(name("python3 -m notes_mcp"), "notes_mcp");
        assert_eq!(name("uvx mcp-server-git@1.2"), "mcp-server-git");
        assert_eq!(name("./bin/my-server --port 3"), "my-server");
        assert_eq!(name("npx"), "npx");
    }
}
