//! deploy/kubernetes against the Kubernetes schemas and against the binary.
//!
//! - The manifests validate with `kubernetes-validate --strict` against pinned Kubernetes
//!   versions (the package ships the schemas, so this runs offline once it is installed; it is
//!   installed under the target folder when python3 lacks it: tests/support/python.rs).
//! - kustomization.yaml lists every file in the folder and nothing else, and the names the
//!   files share (Secret and its keys, ConfigMap, ports, labels) agree.
//! - The real binary runs with the Deployment's own command line, environment and mounts: the
//!   Secret laid out as the kubelet lays out a secret volume, holding a key ring made by
//!   `invitegate keygen` and a TLS pair made here. Only the port numbers are changed, to free
//!   ones. The probes answer on the manifest's paths, ports and schemes; SIGTERM takes the pod
//!   out of readiness and ends the process within the grace period; and a key ring swapped in
//!   as the kubelet swaps a Secret update is picked up without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/python.rs"]
mod python;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize as _;
use serde_norway::Value;

use python::Package;
use support::DEADLINE;

/// The Kubernetes versions the manifests are checked against: the first in which every field
/// they use is generally available (the preStop `sleep` action went GA in 1.34), and the
/// newest whose schemas the pinned kubernetes-validate ships, which would show a field
/// removed since.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.34.0", "1.37.0"];

/// kubernetes-validate, pinned: the release that ships the schemas of [`KUBERNETES_VERSIONS`].
const KUBERNETES_VALIDATE: Package = Package {
    pip: "kubernetes-validate==1.37.0",
    check: "import kubernetes_validate.utils",
    needs: "tests/kubernetes.rs validates the manifests with the Python package \
            kubernetes-validate: install python3 (3.8 or later) with pip (Debian and Ubuntu: \
            apt-get install python3 python3-pip), or the package itself (python3 -m pip install \
            kubernetes-validate==1.37.0)",
};

/// Files in the folder that are not kustomize inputs.
const NOT_LISTED: [&str; 2] = ["kustomization.yaml", "README.md"];

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn read(name: &str) -> String {
    let path = folder().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(name: &str) -> Value {
    serde_norway::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The files kustomization.yaml names: resources and generator inputs.
fn listed() -> BTreeSet<String> {
    let kustomization = yaml("kustomization.yaml");
    let mut names: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    for generators in ["configMapGenerator", "secretGenerator"] {
        for generator in kustomization[generators]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            names.extend(strings(&generator["envs"]));
            // `files` entries may be `KEY=FILE`.
            names.extend(
                strings(&generator["files"])
                    .into_iter()
                    .map(|f| f.rsplit('=').next().unwrap().to_owned()),
            );
        }
    }
    names
}

fn deployment() -> Value {
    yaml("deployment.yaml")
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container: invitegate");
    &containers[0]
}

/// The container's ports by name.
fn container_ports(container: &Value) -> BTreeMap<String, u16> {
    container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|port| {
            let number = port["containerPort"].as_u64().expect("containerPort");
            (
                port["name"].as_str().expect("a named port").to_owned(),
                u16::try_from(number).unwrap(),
            )
        })
        .collect()
}

/// A port given by name or number, as a probe or a Service gives it.
fn port_number(ports: &BTreeMap<String, u16>, port: &Value) -> u16 {
    match port {
        Value::Number(n) => u16::try_from(n.as_u64().unwrap()).unwrap(),
        Value::String(name) => *ports
            .get(name)
            .unwrap_or_else(|| panic!("no container port is named {name}")),
        other => panic!("a port is a name or a number, not {other:?}"),
    }
}

/// `KEY=VALUE` lines of settings.env (what kustomize's `envs` reads): comments and blank
/// lines skipped.
fn settings() -> BTreeMap<String, String> {
    read("settings.env")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').expect("KEY=VALUE");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Every `kubectl create secret generic NAME ...` command of the folder's README: the name and
/// the keys it creates.
fn secret_commands() -> Vec<(String, BTreeSet<String>)> {
    let readme = read("README.md");
    let mut commands = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        // `kubectl [-n NAMESPACE] create secret generic NAME ...`
        let Some(start) = line.find("create secret generic ") else {
            continue;
        };
        let mut text = line[start..].to_owned();
        while text.trim_end().ends_with('\\') {
            text = text.trim_end().trim_end_matches('\\').to_owned();
            text.push(' ');
            text.push_str(lines.next().expect("the command goes on"));
        }
        let words: Vec<&str> = text.split_whitespace().skip(3).collect();
        let name = words
            .iter()
            .find(|w| !w.starts_with('-'))
            .expect("a secret name")
            .to_string();
        let keys = words
            .iter()
            .filter_map(|w| {
                w.strip_prefix("--from-file=")
                    .or_else(|| w.strip_prefix("--from-literal="))
            })
            .map(|source| source.split('=').next().unwrap().to_owned())
            .collect();
        commands.push((name, keys));
    }
    assert!(
        !commands.is_empty(),
        "deploy/kubernetes/README.md shows no `kubectl create secret generic` command"
    );
    commands
}

#[test]
fn the_kustomization_lists_every_file_and_only_those() {
    let mut present = BTreeSet::new();
    for entry in std::fs::read_dir(folder()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !NOT_LISTED.contains(&name.as_str()) {
            present.insert(name);
        }
    }
    let listed = listed();
    let unlisted: Vec<_> = present.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&present).collect();
    assert!(
        unlisted.is_empty() && missing.is_empty(),
        "deploy/kubernetes: files not in kustomization.yaml: {unlisted:?}; listed but absent: \
         {missing:?}"
    );
}

#[test]
fn the_manifests_agree_on_names_ports_and_keys() {
    let deployment = deployment();
    let pod = &deployment["spec"]["template"];
    let container = container(&deployment);
    let ports = container_ports(container);
    let labels = &pod["metadata"]["labels"];
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"], *labels,
        "the Deployment selects its own pods"
    );

    // The Secret: the README's commands create the keys the Deployment reads, by one name.
    let commands = secret_commands();
    let volumes = pod["spec"]["volumes"].as_sequence().expect("volumes");
    let mut read_keys = BTreeSet::new();
    let mut secret_names = BTreeSet::new();
    for volume in volumes {
        let secret = &volume["secret"];
        secret_names.insert(secret["secretName"].as_str().unwrap().to_owned());
        for item in secret["items"].as_sequence().expect("secret items") {
            read_keys.insert(item["key"].as_str().unwrap().to_owned());
        }
    }
    let mut setting_keys = BTreeSet::new();
    for env in container["env"].as_sequence().expect("env") {
        let from = &env["valueFrom"];
        if let Some(name) = from["secretKeyRef"]["name"].as_str() {
            secret_names.insert(name.to_owned());
            read_keys.insert(from["secretKeyRef"]["key"].as_str().unwrap().to_owned());
        }
        if let Some(name) = from["configMapKeyRef"]["name"].as_str() {
            let generated = yaml("kustomization.yaml")["configMapGenerator"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|g| g["name"].as_str() == Some(name));
            assert!(
                generated,
                "ConfigMap {name} is not generated by kustomization.yaml"
            );
            let key = from["configMapKeyRef"]["key"].as_str().unwrap();
            setting_keys.insert(key.to_owned());
            let optional = from["configMapKeyRef"]["optional"].as_bool() == Some(true);
            assert!(
                optional || settings().contains_key(key),
                "settings.env lacks {key}, which the Deployment needs"
            );
        }
    }
    for (name, created) in &commands {
        assert_eq!(
            secret_names,
            BTreeSet::from([name.clone()]),
            "the README's Secret and the Deployment's"
        );
        assert_eq!(
            created, &read_keys,
            "the keys the README's command creates and those the Deployment reads"
        );
    }
    let unread: Vec<_> = settings()
        .into_keys()
        .filter(|key| !setting_keys.contains(key))
        .collect();
    assert!(
        unread.is_empty(),
        "settings.env sets {unread:?}, which no container reads"
    );

    // Mounted whole: a subPath mount is a copy that a Secret update never reaches.
    for mount in container["volumeMounts"].as_sequence().expect("mounts") {
        assert!(
            mount["subPath"].is_null() && mount["subPathExpr"].is_null(),
            "{mount:?}"
        );
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{mount:?}");
    }

    // The Service, the NetworkPolicy and the scrape annotations name ports the container has.
    let service = yaml("service.yaml");
    assert_eq!(service["spec"]["selector"], *labels);
    for port in service["spec"]["ports"].as_sequence().unwrap() {
        port_number(&ports, &port["targetPort"]);
    }
    let policy = yaml("networkpolicy.yaml");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], *labels);
    let mut admitted = BTreeSet::new();
    for rule in policy["spec"]["ingress"].as_sequence().unwrap() {
        for port in rule["ports"].as_sequence().unwrap() {
            admitted.insert(port_number(&ports, &port["port"]));
        }
    }
    assert_eq!(
        admitted,
        ports.values().copied().collect(),
        "the NetworkPolicy admits someone to every port, and to no other"
    );
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    let scraped: u16 = annotations["prometheus.io/port"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ports.values().any(|&p| p == scraped),
        "prometheus.io/port {scraped} is not a container port"
    );

    // The autoscaler, the budget: this Deployment and its pods.
    let autoscaler = yaml("horizontalpodautoscaler.yaml");
    assert_eq!(
        autoscaler["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert!(autoscaler["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let budget = yaml("poddisruptionbudget.yaml");
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *labels);
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let path = python::package_path(&KUBERNETES_VALIDATE);
    let kustomization = yaml("kustomization.yaml");
    let resources = strings(&kustomization["resources"]);
    let documents: usize = resources
        .iter()
        .map(|name| {
            serde_norway::Deserializer::from_str(&read(name))
                .map(|doc| Value::deserialize(doc).unwrap())
                .filter(|doc| !doc.is_null())
                .count()
        })
        .sum();
    let output = support::output_within(
        python::python3()
            .args(["-m", "kubernetes_validate", "--strict"])
            .args(
                KUBERNETES_VERSIONS
                    .iter()
                    .flat_map(|v| ["--kubernetes-version", v]),
            )
            .args(&resources)
            .current_dir(folder())
            .env("PYTHONPATH", python::python_path(&path)),
        DEADLINE,
    );
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{out}{err}");
    // A kind or API version it has no schema for is only a warning there: here it fails.
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .all(|line| line.starts_with("INFO ") && line.contains(" passed ")),
        "{out}{err}"
    );
    assert_eq!(
        lines.len(),
        documents * KUBERNETES_VERSIONS.len(),
        "one line a resource and version:\n{out}"
    );
}

// ---- the kubelet's part: the Secret on disk, the container's command line ----

/// A Secret volume as the kubelet writes it (its atomic writer): the files in a timestamped
/// folder, `..data` a link to that folder, and each file a link through `..data`. An update
/// writes a new folder and swaps `..data` with one rename, so that a reader sees the old files
/// or the new ones, never a mix, and removes the old folder.
struct SecretVolume {
    dir: PathBuf,
    /// (key in the Secret, file name in the volume, mode).
    items: Vec<(String, String, u32)>,
    /// The timestamped folder `..data` points at.
    current: Option<String>,
}

impl SecretVolume {
    /// `fs_group`: whether the pod sets one, which makes the kubelet add group read to every
    /// file whatever the mode says.
    fn new(dir: PathBuf, volume: &Value, fs_group: bool) -> Self {
        let secret = &volume["secret"];
        assert!(
            secret.is_mapping(),
            "volume {:?}: only Secret volumes are laid out here",
            volume["name"]
        );
        // The kubelet's default is 0644.
        let default_mode = secret["defaultMode"].as_u64().unwrap_or(0o644);
        let items = secret["items"]
            .as_sequence()
            .expect("secret items")
            .iter()
            .map(|item| {
                let path = item["path"].as_str().unwrap().to_owned();
                assert!(
                    !path.contains('/'),
                    "item path {path}: nested paths are not laid out"
                );
                let mode = item["mode"].as_u64().unwrap_or(default_mode)
                    | if fs_group { 0o440 } else { 0 };
                (
                    item["key"].as_str().unwrap().to_owned(),
                    path,
                    u32::try_from(mode).unwrap(),
                )
            })
            .collect();
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            items,
            current: None,
        }
    }

    /// Writes the Secret's `data`, or swaps in new data as an update does.
    fn write(&mut self, data: &BTreeMap<String, Vec<u8>>) {
        let now = time::OffsetDateTime::now_utc();
        // The kubelet's name: `..` and the UTC time, then a suffix that makes it unique.
        let stamp = format!(
            "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond()
        );
        let staged = self.dir.join(&stamp);
        std::fs::create_dir(&staged).unwrap();
        for (key, path, mode) in &self.items {
            let content = data
                .get(key)
                .unwrap_or_else(|| panic!("the Secret has no key {key}"));
            std::fs::write(staged.join(path), content).unwrap();
            support::set_mode(&staged.join(path), *mode);
        }
        let swap = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &swap).unwrap();
        std::fs::rename(&swap, self.dir.join("..data")).unwrap();
        for (_, path, _) in &self.items {
            let visible = self.dir.join(path);
            if std::fs::symlink_metadata(&visible).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(path), &visible).unwrap();
            }
        }
        if let Some(old) = self.current.replace(stamp) {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

/// The final stage of the repository's Dockerfile: its ENTRYPOINT and its ENV settings, which
/// the container starts with.
fn image() -> (Vec<String>, Vec<(String, String)>) {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let mut entrypoint = None;
    let mut env = Vec::new();
    for line in last_stage.lines() {
        if let Some(json) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = Some(serde_json::from_str(json).expect("ENTRYPOINT in exec form"));
        }
        if let Some(setting) = line.strip_prefix("ENV ") {
            let (key, value) = setting.split_once('=').expect("ENV KEY=VALUE");
            env.push((key.to_owned(), value.to_owned()));
        }
    }
    (entrypoint.expect("an ENTRYPOINT"), env)
}

/// What the Secret holds, made here: the key ring `invitegate keygen` wrote to `ring`, the TLS
/// pair, a password.
fn secret_data(
    keys: &BTreeSet<String>,
    ring: &Path,
    tls: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> BTreeMap<String, Vec<u8>> {
    keys.iter()
        .map(|key| {
            let value = match key.as_str() {
                "keys.txt" => std::fs::read(ring).unwrap(),
                "tls.crt" => tls.cert.pem().into_bytes(),
                "tls.key" => tls.signing_key.serialize_pem().into_bytes(),
                "basic-auth-password" => {
                    let mut random = [0u8; 18];
                    getrandom::fill(&mut random).unwrap();
                    support::hex(&random).into_bytes()
                }
                other => panic!("the test does not know what the Secret's {other} holds"),
            };
            (key.clone(), value)
        })
        .collect()
}

/// The keys the Deployment reads from its Secret, as files and as variables.
fn secret_keys(deployment: &Value) -> BTreeSet<String> {
    let pod = &deployment["spec"]["template"]["spec"];
    let mut keys = BTreeSet::new();
    for volume in pod["volumes"].as_sequence().into_iter().flatten() {
        for item in volume["secret"]["items"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            keys.insert(item["key"].as_str().unwrap().to_owned());
        }
    }
    for env in container(deployment)["env"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        if let Some(key) = env["valueFrom"]["secretKeyRef"]["key"].as_str() {
            keys.insert(key.to_owned());
        }
    }
    keys
}

/// Free TCP ports, one for each of `count`, all distinct.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// The container as the test runs it: the manifest's command line and environment, with paths
/// under a mount moved to the test's folder and container ports moved to free ones.
struct Container {
    command: Command,
    /// Container port (as the manifest says) to the port used here.
    ports: BTreeMap<u16, u16>,
    /// The container's environment as resolved (literal values, the Secret, the ConfigMap).
    env: BTreeMap<String, String>,
    /// Whether the main port speaks TLS (a certificate is configured).
    tls: bool,
}

impl Container {
    fn new(
        container: &Value,
        mounts: &[(String, PathBuf)],
        secret: &BTreeMap<String, Vec<u8>>,
        dir: &Path,
    ) -> Self {
        let declared = container_ports(container);
        let free = free_ports(declared.len());
        let ports: BTreeMap<u16, u16> = declared.values().copied().zip(free).collect();
        let mut rewritten = BTreeMap::<u16, usize>::new();
        let mut rewrite = |text: &str| -> String {
            for (mount, local) in mounts {
                if let Some(rest) = text.strip_prefix(mount.as_str())
                    && (rest.is_empty() || rest.starts_with('/'))
                {
                    return format!("{}{rest}", local.display());
                }
            }
            assert!(
                !text.starts_with('/'),
                "{text}: no volume is mounted there, and the image holds only the binary"
            );
            if let Some((host, port)) = text.rsplit_once(':')
                && let Some((&declared, free)) = port
                    .parse::<u16>()
                    .ok()
                    .and_then(|p| ports.get_key_value(&p))
            {
                *rewritten.entry(declared).or_default() += 1;
                return format!("{host}:{free}");
            }
            text.to_owned()
        };

        let (entrypoint, image_env) = image();
        let mut line: Vec<String> = match container["command"].as_sequence() {
            Some(_) => strings(&container["command"]),
            None => entrypoint.clone(),
        };
        assert_eq!(
            line.first(),
            entrypoint.first(),
            "the container runs the image's binary"
        );
        line.extend(strings(&container["args"]));
        let args: Vec<String> = line[1..].iter().map(|arg| rewrite(arg)).collect();

        let settings = settings();
        let mut env: BTreeMap<String, String> = image_env.into_iter().collect();
        for var in container["env"].as_sequence().into_iter().flatten() {
            let name = var["name"].as_str().unwrap().to_owned();
            let from = &var["valueFrom"];
            let value = if let Some(value) = var["value"].as_str() {
                Some(rewrite(value))
            } else if let Some(key) = from["secretKeyRef"]["key"].as_str() {
                let bytes = secret.get(key).expect("a key the test made");
                Some(String::from_utf8(bytes.clone()).unwrap())
            } else if let Some(key) = from["configMapKeyRef"]["key"].as_str() {
                let value = settings.get(key).cloned();
                let optional = from["configMapKeyRef"]["optional"].as_bool() == Some(true);
                assert!(value.is_some() || optional, "settings.env lacks {key}");
                value
            } else {
                panic!("{name}: a value, a secretKeyRef or a configMapKeyRef")
            };
            match value {
                Some(value) => env.insert(name, value),
                // An optional key that is missing leaves the variable unset.
                None => env.remove(&name),
            };
        }
        for port in ports.keys() {
            assert_eq!(
                rewritten.get(port),
                Some(&1),
                "container port {port} is given to the server once, as ADDR:{port}"
            );
        }
        let tls =
            args.iter().any(|arg| arg == "--tls-cert") || env.contains_key("INVITEGATE_TLS_CERT");

        let mut command = Command::new(support::binary());
        command
            .args(&args)
            .env_clear()
            .envs(&env)
            .current_dir(dir)
            .stdin(std::process::Stdio::null());
        Self {
            command,
            ports,
            env,
            tls,
        }
    }

    /// The port used here for a port the manifest names.
    fn port(&self, container: &Value, port: &Value) -> u16 {
        let number = port_number(&container_ports(container), port);
        self.ports[&number]
    }
}

// ---- a small HTTP/1.1 client, over TLS when asked ----

#[derive(Clone)]
enum Scheme {
    Http,
    /// TLS, trusting the certificate the test made (for `localhost`). The kubelet checks no
    /// certificate at all; a client that checks this one is the stricter of the two.
    Https(Arc<rustls::ClientConfig>),
}

fn tls_client(
    certificate: &rustls::pki_types::CertificateDer<'static>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Reads until the peer closes; a TLS peer that closes without close_notify is done too.
fn read_all(stream: &mut impl std::io::Read, into: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => into.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !into.is_empty() => {
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends one request (with `Connection: close`) to 127.0.0.1:`port`; the status and body.
fn exchange(port: u16, scheme: &Scheme, request: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    tcp.set_read_timeout(Some(DEADLINE))?;
    let mut bytes = Vec::new();
    match scheme {
        Scheme::Http => {
            tcp.write_all(request.as_bytes())?;
            read_all(&mut tcp, &mut bytes)?;
        }
        Scheme::Https(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let connection = rustls::ClientConnection::new(Arc::clone(config), name)
                .map_err(std::io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(connection, tcp);
            tls.write_all(request.as_bytes())?;
            read_all(&mut tls, &mut bytes)?;
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn get(port: u16, scheme: &Scheme, path: &str) -> std::io::Result<(u16, String)> {
    exchange(
        port,
        scheme,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

/// Waits until something accepts connections on `port` (a listener that binds after the
/// start-up line is logged): retried on refusal only, until the deadline.
fn wait_for_listener(port: u16) {
    let started = Instant::now();
    loop {
        match TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                assert!(
                    started.elapsed() < DEADLINE,
                    "nothing listens on port {port} within {DEADLINE:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connecting to port {port}: {e}"),
        }
    }
}

/// A probe of the container: its path, the port used here, its scheme.
fn probe(
    container: &Value,
    running: &Container,
    name: &str,
    tls: &Scheme,
) -> (String, u16, Scheme) {
    let get = &container[name]["httpGet"];
    assert!(get.is_mapping(), "{name} is an httpGet probe");
    let scheme = match get["scheme"].as_str().unwrap_or("HTTP") {
        "HTTP" => Scheme::Http,
        "HTTPS" => tls.clone(),
        other => panic!("{name}: scheme {other}"),
    };
    (
        get["path"].as_str().unwrap().to_owned(),
        running.port(container, &get["port"]),
        scheme,
    )
}

/// The value of `invitegate_reloads_total{result="ok"}` in a scrape.
fn reloads(scrape: &str) -> u64 {
    support::counter(scrape, r#"invitegate_reloads_total{result="ok"}"#)
}

/// POSTs a B2C user-flow call for alice@example.com with `code`; the status and body.
fn user_flow(port: u16, scheme: &Scheme, basic: &str, code: &str) -> (u16, String) {
    let body = format!(
        r#"{{"email":"alice@example.com","extension_InvitationCode":"{code}","step":"PostAttributeCollection"}}"#
    );
    let request = format!(
        "POST /api/b2c/user-flow HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(port, scheme, &request).unwrap()
}

#[test]
fn the_deployment_serves_probes_drains_and_reloads_as_its_manifest_says() {
    use base64::Engine as _;

    let deployment = deployment();
    let pod = &deployment["spec"]["template"]["spec"];
    let spec = container(&deployment);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    // The Secret's content: a key ring from the binary, a TLS pair for localhost, a password.
    let keygen = support::run(support::invitegate(dir).args(["keygen", "--add-to", "keys.txt"]));
    assert!(keygen.status.success(), "{keygen:?}");
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let mut secret = secret_data(&secret_keys(&deployment), &dir.join("keys.txt"), &tls);

    // Each mount, laid out as the kubelet lays out its volume.
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for mount in spec["volumeMounts"].as_sequence().expect("mounts") {
        let name = mount["name"].as_str().unwrap();
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"));
        let fs_group = pod["securityContext"]["fsGroup"].is_number();
        let mut on_disk = SecretVolume::new(dir.join("volumes").join(name), volume, fs_group);
        on_disk.write(&secret);
        mounts.push((
            mount["mountPath"].as_str().unwrap().to_owned(),
            on_disk.dir.clone(),
        ));
        volumes.push(on_disk);
    }

    let mut running = Container::new(spec, &mounts, &secret, dir);
    let main_scheme = if running.tls {
        Scheme::Https(tls_client(tls.cert.der()))
    } else {
        Scheme::Http
    };
    let mut server = support::serve(&mut running.command);

    // The Service sends to the port the server listens on.
    let service = yaml("service.yaml");
    let target = &service["spec"]["ports"][0]["targetPort"];
    let main_port = running.port(spec, target);
    assert_eq!(server.addr.port(), main_port, "the Service's target port");

    // Liveness and readiness as the kubelet asks for them.
    let (live_path, live_port, live_scheme) = probe(spec, &running, "livenessProbe", &main_scheme);
    let (ready_path, ready_port, ready_scheme) =
        probe(spec, &running, "readinessProbe", &main_scheme);
    wait_for_listener(live_port);
    wait_for_listener(ready_port);
    let (status, body) = get(live_port, &live_scheme, &live_path).unwrap();
    assert_eq!(status, 200, "liveness {live_path}: {body}");
    let (status, body) = get(ready_port, &ready_scheme, &ready_path).unwrap();
    assert_eq!(status, 200, "readiness {ready_path}: {body}");

    // Prometheus, as the annotations tell it: plain HTTP, no credentials.
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    let scrape_port = running.ports[&annotations["prometheus.io/port"]
        .as_str()
        .unwrap()
        .parse::<u16>()
        .unwrap()];
    let scrape_path = annotations["prometheus.io/path"].as_str().unwrap();
    let scrape = || {
        let (status, body) = get(scrape_port, &Scheme::Http, scrape_path).unwrap();
        assert_eq!(status, 200, "{scrape_path}: {body}");
        body
    };
    assert_eq!(reloads(&scrape()), 0, "no reload yet");

    // A code from the next key ring (key 2 signs, key 1 still verifies) is refused until the
    // Secret is updated.
    std::fs::copy(dir.join("keys.txt"), dir.join("keys-next.txt")).unwrap();
    let keygen =
        support::run(support::invitegate(dir).args(["keygen", "--add-to", "keys-next.txt"]));
    assert!(keygen.status.success(), "{keygen:?}");
    let mint = support::run(support::invitegate(dir).args([
        "mint",
        "--keys-file",
        "keys-next.txt",
        "--email",
        "alice@example.com",
        "--expires-in",
        "1h",
    ]));
    assert!(mint.status.success(), "{mint:?}");
    let code = support::stdout(&mint).trim().to_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        running.env["BASIC_AUTH_USERNAME"], running.env["BASIC_AUTH_PASSWORD"]
    ));
    let (status, body) = user_flow(main_port, &main_scheme, &basic, &code);
    assert_eq!(status, 400, "a key the server does not hold yet: {body}");

    // The Secret updated: the kubelet swaps `..data`, the file watch sees it.
    secret.insert(
        "keys.txt".to_owned(),
        std::fs::read(dir.join("keys-next.txt")).unwrap(),
    );
    for volume in &mut volumes {
        volume.write(&secret);
    }
    let line = server.log.wait_for(
        |line| line.contains("reloaded keys, deny list and messages"),
        DEADLINE,
    );
    assert!(line.contains(r#""why":"a watched file changed""#), "{line}");
    let (status, body) = user_flow(main_port, &main_scheme, &basic, &code);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""action":"Continue""#), "{body}");
    assert_eq!(reloads(&scrape()), 1, "one reload");

    // SIGTERM, as the kubelet sends it after the preStop hook: out of readiness (503, or the
    // port closed), then an exit within what is left of the grace period.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("a grace period");
    let pre_stop = spec["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    support::signal(server.process.id(), "TERM");
    server
        .log
        .wait_for(|line| line.contains("shutdown signal received"), DEADLINE);
    match get(ready_port, &ready_scheme, &ready_path) {
        Ok((status, body)) => assert_eq!(status, 503, "readiness while draining: {body}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
            ),
            "readiness while draining: {e}"
        ),
    }
    let exit = support::wait_within(
        &mut server.process,
        Duration::from_secs(grace.checked_sub(pre_stop).expect("grace beyond preStop")),
    );
    assert!(
        exit.success(),
        "{exit:?}: {}",
        server.log.rest_within(DEADLINE)
    );
}
