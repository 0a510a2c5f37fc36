//! fapictl: the command line of fapi-guard. Lints, tests and compiles scope policies, inspects and
//! verifies access tokens, and makes test keys and certificates. All decisions come from `fapi-core`.

mod certs;
mod deploy;
mod keys;
mod policy;
mod studio;
mod token;
mod util;

use clap::{Parser, Subcommand, ValueEnum};
use fapi_core::alg::Algorithm;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fapictl",
    version,
    about = "fapi-guard policies, tokens, keys and test certificates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lint, test and compile scope policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inspect and verify access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Generate signing keys (JWK).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Generate a test PKI for mTLS.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Render ready-to-apply configuration with the compiled policy embedded: an Istio WasmPlugin and
    /// Gateway, an Envoy Gateway EnvoyExtensionPolicy and ClientTrafficPolicy, or a plain Envoy front
    /// proxy. Policy errors are printed as `FILE:LINE:COLUMN: error: ...` and nothing is written.
    Deploy(Box<DeployCommand>),
}

#[derive(clap::Args)]
struct DeployCommand {
    /// Where the plugin runs.
    #[arg(value_enum)]
    target: deploy::Target,
    /// The policy (YAML), compiled and embedded as the plugin's configuration.
    #[arg(value_name = "POLICY")]
    policy: PathBuf,
    /// The plugin: oci://REGISTRY/REPO:TAG (istio, envoy-gateway), https://HOST/fapi_guard.wasm (all),
    /// or file:///PATH/fapi_guard.wasm (istio, envoy).
    #[arg(long, value_name = "REF")]
    image: String,
    /// Pin the code: for an OCI image its manifest digest (dist/fapi_guard.image.digest), for a URL
    /// the .wasm's SHA-256 (dist/fapi_guard.wasm.sha256). Hex, without `sha256:`.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Output file, or `-` for standard output.
    #[arg(short, long, value_name = "OUT", default_value = "-")]
    output: PathBuf,
    /// Namespace of the resources (default: istio-system for istio, default for envoy-gateway).
    #[arg(long)]
    namespace: Option<String>,
    /// Name of the resources.
    #[arg(long, default_value = "fapi-guard")]
    name: String,
    /// istio: label of the gateway pods, NAME=VALUE, repeatable (default istio=ingressgateway).
    #[arg(long, value_name = "NAME=VALUE")]
    selector: Vec<String>,
    /// envoy-gateway: the Gateway the policies attach to.
    #[arg(long, default_value = "eg")]
    gateway: String,
    /// istio: host names the Gateway serves (repeatable; default `*`).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// istio: the secret with tls.crt, tls.key and ca.crt (client certificates' CAs) for MUTUAL TLS.
    #[arg(long, default_value = "fapi-guard-tls")]
    tls_secret: String,
    /// envoy-gateway: the ConfigMap whose ca.crt verifies client certificates.
    #[arg(long, default_value = "fapi-guard-client-ca")]
    client_ca: String,
    /// Rename a cluster the policy names (JWKS, revocation feed, introspection) to the Envoy cluster
    /// the mesh has, NAME=CLUSTER (istio: `outbound|PORT||HOST`), repeatable.
    #[arg(long = "cluster", value_name = "NAME=CLUSTER")]
    clusters: Vec<String>,
    /// Secret for pulling the OCI image (istio, envoy-gateway).
    #[arg(long)]
    pull_secret: Option<String>,
    /// envoy: directory of server.pem, server.key.pem and ca.pem.
    #[arg(long, default_value = "/etc/fapi-guard/certs")]
    cert_dir: String,
    /// envoy: the mutual-TLS listener's port.
    #[arg(long, default_value_t = 8443)]
    listen_port: u16,
    /// envoy: the admin interface's port (127.0.0.1 only).
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// envoy: the bank API, HOST:PORT.
    #[arg(long, default_value = "bank-api:8080")]
    upstream: String,
    /// envoy: the authorization server (cluster fapi_as: JWKS, revocation feed), HOST:PORT.
    #[arg(long, default_value = "fapi-as:9443")]
    auth_server: String,
    /// envoy: the name the authorization server's certificate is checked against (SNI).
    #[arg(long, default_value = "as.bank.example")]
    auth_server_sni: String,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check policies; print `FILE:LINE:COLUMN: error|warning: MESSAGE` per problem. Exit 1 on any error.
    Lint {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Lint, then run each policy's tests. The last line is `N passed, M failed` (a policy with errors
    /// counts as one failure). Exit 1 if any test fails, a policy has errors, or a policy has no tests.
    Test {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Lint, then write the plugin configuration (JSON, key files inlined, tests removed).
    /// Nothing is written when the policy has errors.
    Compile {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Output file, or `-` for standard output.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// Serve the policy studio (built by scripts/build-studio into target/studio) on 127.0.0.1:
    /// edit, lint, test and try a policy in the browser. The server only hands out static files:
    /// every decision runs in the page (fapi-core in WebAssembly); nothing is sent anywhere.
    Studio {
        /// Port on 127.0.0.1 (0: any free port; the URL is printed).
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Open the page in the desktop's browser (xdg-open).
        #[arg(long)]
        open: bool,
        /// The built studio (default: target/studio next to this binary, else ./target/studio).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Decode a token (header, claims, binding, times) and verify it when keys are given. The token is
    /// never printed back. Exit 1 when verification fails.
    Inspect {
        /// The token, or `-` to read it from standard input (a `Bearer `/`DPoP ` prefix is ignored).
        #[arg(value_name = "TOKEN|-")]
        token: String,
        /// Verify the header and signature with this key set (JWKS or a single public JWK).
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// Verify with a policy: its issuer rules, its inline or file keys (or --jwks), and the claims.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The time to check against, in Unix seconds (default: the system clock).
        #[arg(long, value_name = "UNIX", allow_negative_numbers = true)]
        now: Option<i64>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a signing key: DIR/<kid>.jwk.json (private, mode 0600) and DIR/<kid>.jwks.json (public).
    New {
        /// Signature algorithm (FAPI 2.0 §5.4.1).
        #[arg(long, value_enum, ignore_case = true)]
        alg: KeyAlg,
        /// Key id (default: the RFC 7638 thumbprint).
        #[arg(long)]
        kid: Option<String>,
        /// Directory to write to, or `-` to print both documents to standard output: this PRINTS THE
        /// PRIVATE KEY.
        #[arg(long, value_name = "DIR|-")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyAlg {
    #[value(name = "ES256")]
    Es256,
    #[value(name = "PS256")]
    Ps256,
    #[value(name = "EdDSA")]
    EdDsa,
}

impl From<KeyAlg> for Algorithm {
    fn from(a: KeyAlg) -> Self {
        match a {
            KeyAlg::Es256 => Algorithm::ES256,
            KeyAlg::Ps256 => Algorithm::PS256,
            KeyAlg::EdDsa => Algorithm::EdDSA,
        }
    }
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Generate a test CA, a server certificate and client certificates (ECDSA P-256), and print each
    /// client certificate's RFC 8705 x5t#S256 and the hex SHA-256 digest Envoy reports. FOR TESTS ONLY.
    New {
        /// Directory to write to (ca.pem, ca.key.pem, server.pem, server.key.pem, NAME.pem, NAME.key.pem).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, value_name = "NAME", default_value = "fapi-guard test CA")]
        ca_name: String,
        /// DNS name of the server (repeatable; default localhost and 127.0.0.1 when no name is given).
        #[arg(long, value_name = "NAME")]
        server_dns: Vec<String>,
        /// IP address of the server (repeatable).
        #[arg(long, value_name = "IP")]
        server_ip: Vec<String>,
        /// A client certificate signed by the CA (repeatable).
        #[arg(long = "client", value_name = "NAME")]
        clients: Vec<String>,
        /// A self-signed client certificate (repeatable; RFC 8705 §2.2).
        #[arg(long = "self-signed-client", value_name = "NAME")]
        self_signed_clients: Vec<String>,
        /// Validity of server and client certificates in days (the CA gets twice as long).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, &command_line()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fapictl: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The command as typed (`fapictl ...`), each argument quoted when a shell would need it, without its
/// output option (where a file goes is not part of it): written into rendered files so that they can
/// be rendered again and compared.
fn command_line() -> String {
    let mut words = vec!["fapictl".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-o" || arg == "--output" {
            args.next();
            continue;
        }
        if arg.starts_with("--output=") || (arg.starts_with("-o") && arg.len() > 2) {
            continue;
        }
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c));
        words.push(if plain {
            arg
        } else {
            format!("'{}'", arg.replace('\'', "'\\''"))
        });
    }
    words.join(" ")
}

/// `Ok(false)`: the command ran and found a failure (lint errors, failed tests, invalid token).
fn run(command: Command, command_line: &str) -> anyhow::Result<bool> {
    match command {
        Command::Deploy(d) => deploy::run(
            &deploy::DeployArgs {
                target: d.target,
                policy: d.policy,
                image: d.image,
                sha256: d.sha256,
                output: d.output,
                namespace: d.namespace,
                name: d.name,
                selector: d.selector,
                gateway: d.gateway,
                hosts: d.hosts,
                tls_secret: d.tls_secret,
                client_ca: d.client_ca,
                clusters: d.clusters,
                pull_secret: d.pull_secret,
                cert_dir: d.cert_dir,
                listen_port: d.listen_port,
                admin_port: d.admin_port,
                upstream: d.upstream,
                auth_server: d.auth_server,
                auth_server_sni: d.auth_server_sni,
            },
            command_line,
        ),
        Command::Policy(PolicyCommand::Lint { files }) => policy::lint(&files),
        Command::Policy(PolicyCommand::Test { files }) => policy::test(&files),
        Command::Policy(PolicyCommand::Compile { file, output }) => policy::compile(&file, &output),
        Command::Policy(PolicyCommand::Studio { port, open, dir }) => studio::serve(port, open, dir),
        Command::Token(TokenCommand::Inspect {
            token,
            jwks,
            policy,
            now,
        }) => token::inspect(token::InspectArgs {
            token,
            jwks,
            policy,
            now,
        }),
        Command::Keys(KeysCommand::New { alg, kid, out, force }) => {
            keys::new(alg.into(), kid, &out, force).map(|()| true)
        }
        Command::Certs(CertsCommand::New {
            out,
            ca_name,
            server_dns,
            server_ip,
            clients,
            self_signed_clients,
            days,
            force,
        }) => certs::new(certs::CertsArgs {
            out,
            ca_name,
            server_dns,
            server_ip,
            clients,
            self_signed_clients,
            days,
            force,
        })
        .map(|()| true),
    }
}
