//! The deployment files agree with the server: the B2C custom policy snippet is well-formed XML
//! that calls the custom-policy route with the claim names the server reads by default, every
//! Azure Functions function forwards one documented route, and the container image runs as a
//! non-root user on port 8080 with a health check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The routes the guides document, under the `/api/` prefix that Azure Functions adds.
const ROUTES: [&str; 3] = [
    "b2c/user-flow",
    "b2c/custom-policy",
    "entra/attribute-collection-submit",
];

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative))
        .unwrap_or_else(|err| panic!("reading {relative}: {err}"))
}

// ---- a small well-formedness check: enough to catch a broken edit of the snippet ----

/// One element as the checker saw it: its name and its attributes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    /// Names of the enclosing elements, outermost first.
    path: Vec<String>,
}

impl Element {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Checks that `text` is well-formed XML (one root, nested tags, quoted attributes, known
/// entities, no `--` inside comments) and returns every element with its enclosing path.
fn elements(text: &str) -> Result<Vec<Element>, String> {
    let mut found = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = text.trim_start_matches('\u{feff}');
    while let Some(start) = rest.find('<') {
        check_text(&rest[..start])?;
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            if after[..end].contains("--") {
                return Err(format!(
                    "\"--\" inside a comment: {}",
                    &after[..end.min(60)]
                ));
            }
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("<?") {
            let end = after
                .find("?>")
                .ok_or("unterminated processing instruction")?;
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').ok_or("unterminated end tag")?;
            let name = after[..end].trim();
            match open.pop() {
                Some(expected) if expected == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            rest = &after[end + 1..];
        } else {
            let end = tag_end(rest).ok_or("unterminated start tag")?;
            let inner = &rest[1..end];
            let (inner, empty) = match inner.strip_suffix('/') {
                Some(inner) => (inner, true),
                None => (inner, false),
            };
            let (name, attributes) = parse_tag(inner)?;
            if open.is_empty() {
                roots += 1;
            }
            found.push(Element {
                name: name.clone(),
                attributes,
                path: open.clone(),
            });
            if !empty {
                open.push(name);
            }
            rest = &rest[end + 1..];
        }
    }
    check_text(rest)?;
    if let Some(name) = open.pop() {
        return Err(format!("<{name}> is never closed"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(found)
}

/// Index of the `>` that ends the tag starting at `tag[0]`, skipping quoted attribute values.
fn tag_end(tag: &str) -> Option<usize> {
    let mut quote = None;
    for (index, c) in tag.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(index),
            (None, '<') if index > 0 => return None,
            _ => {}
        }
    }
    None
}

fn parse_tag(inner: &str) -> Result<(String, Vec<(String, String)>), String> {
    let name_end = inner
        .find(|c: char| c.is_whitespace())
        .unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || ":_-.".contains(c))
    {
        return Err(format!("bad element name {name:?}"));
    }
    let mut attributes = Vec::new();
    let mut rest = inner[name_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("attribute without value in <{name}>"))?;
        let key = rest[..eq].trim().to_owned();
        let value_part = rest[eq + 1..].trim_start();
        let quote = value_part
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| format!("unquoted attribute {key} in <{name}>"))?;
        let close = value_part[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated attribute {key} in <{name}>"))?;
        let value = &value_part[1..=close];
        check_text(value)?;
        if attributes.iter().any(|(existing, _)| *existing == key) {
            return Err(format!("attribute {key} twice in <{name}>"));
        }
        attributes.push((key, value.to_owned()));
        rest = value_part[close + 2..].trim_start();
    }
    Ok((name.to_owned(), attributes))
}

/// Character data may hold only the predefined entities and character references.
fn check_text(text: &str) -> Result<(), String> {
    for (index, _) in text.match_indices('&') {
        let entity = &text[index..];
        let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"]
            .iter()
            .any(|known| entity.starts_with(known));
        if !known {
            return Err(format!("bare & in {:?}", &entity[..entity.len().min(20)]));
        }
    }
    Ok(())
}

#[test]
fn the_checker_refuses_what_is_not_well_formed() {
    let good = r#"<?xml version="1.0"?><!-- ok --><a x="1"><b y='2'/><c>t &amp; u</c></a>"#;
    assert_eq!(elements(good).unwrap().len(), 3);
    for bad in [
        "<a><b></a></b>",
        "<a>",
        "<a></a><b></b>",
        "<a x=1></a>",
        r#"<a x="1" x="2"></a>"#,
        "<a>fish & chips</a>",
        "<a><!-- a -- b --></a>",
        r#"<a x="1></a>"#,
        "<a></b>",
        "",
    ] {
        assert!(elements(bad).is_err(), "accepted {bad:?}");
    }
}

// ---- the B2C custom policy snippet ----

const POLICY: &str = "deploy/b2c-custom-policy/TrustFrameworkExtensions.xml";
const REST_HANDLER: &str = "Web.TPEngine.Providers.RestfulProvider, Web.TPEngine, \
                            Version=1.0.0.0, Culture=neutral, PublicKeyToken=null";

fn policy() -> Vec<Element> {
    elements(&read(POLICY)).unwrap_or_else(|err| panic!("{POLICY} is not well-formed: {err}"))
}

fn technical_profile<'a>(all: &'a [Element], id: &str) -> Vec<&'a Element> {
    // Elements after the profile's start tag whose path runs through it.
    let start = all
        .iter()
        .position(|e| e.name == "TechnicalProfile" && e.attribute("Id") == Some(id))
        .unwrap_or_else(|| panic!("no TechnicalProfile {id}"));
    let depth = all[start].path.len();
    all[start + 1..]
        .iter()
        .take_while(|e| e.path.len() > depth)
        .collect()
}

/// The text of `<Item Key="...">` metadata, read from the raw file since the checker keeps no
/// character data.
fn metadata_item(key: &str) -> String {
    let text = read(POLICY);
    let open = format!("<Item Key=\"{key}\">");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no metadata item {key}"))
        + open.len();
    let end = text[start..].find("</Item>").unwrap();
    text[start..start + end].to_owned()
}

#[test]
fn policy_declares_the_claim_types() {
    let all = policy();
    let declared: BTreeSet<&str> = all
        .iter()
        .filter(|e| e.name == "ClaimType" && e.path.ends_with(&["ClaimsSchema".to_owned()]))
        .filter_map(|e| e.attribute("Id"))
        .collect();
    for claim in [
        "invitationCode",
        "invitationKind",
        "invitationExpires",
        "invitationKeyId",
    ] {
        assert!(
            declared.contains(claim),
            "{claim} not declared: {declared:?}"
        );
    }
    let text = read(POLICY);
    assert!(text.contains("<UserInputType>TextBox</UserInputType>"));
}

#[test]
fn policy_calls_the_custom_policy_route_with_basic_auth() {
    let url = metadata_item("ServiceUrl");
    assert!(url.starts_with("https://"), "{url}");
    assert!(url.ends_with("/api/b2c/custom-policy"), "{url}");
    assert_eq!(metadata_item("SendClaimsIn"), "Body");
    assert_eq!(metadata_item("AuthenticationType"), "Basic");
    assert_eq!(metadata_item("AllowInsecureAuthInProduction"), "false");

    let all = policy();
    let profile = technical_profile(&all, "REST-invitegate-VerifyInvitationCode");
    let protocol = profile.iter().find(|e| e.name == "Protocol").unwrap();
    assert_eq!(protocol.attribute("Name"), Some("Proprietary"));
    assert_eq!(protocol.attribute("Handler"), Some(REST_HANDLER));

    let keys: Vec<(&str, &str)> = profile
        .iter()
        .filter(|e| e.name == "Key")
        .map(|e| {
            (
                e.attribute("Id").unwrap(),
                e.attribute("StorageReferenceId").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("BasicAuthenticationUsername", "B2C_1A_RestApiUsername"),
            ("BasicAuthenticationPassword", "B2C_1A_RestApiPassword"),
        ]
    );
}

#[test]
fn policy_sends_the_claim_names_the_server_reads_by_default() {
    let all = policy();
    let profile = technical_profile(&all, "REST-invitegate-VerifyInvitationCode");
    // The body field is the PartnerClaimType if there is one, else the claim type's id.
    let sent: BTreeSet<&str> = profile
        .iter()
        .filter(|e| e.name == "InputClaim")
        .map(|e| {
            e.attribute("PartnerClaimType")
                .or(e.attribute("ClaimTypeReferenceId"))
                .unwrap()
        })
        .collect();
    // --policy-email-claim and --policy-code-claim default to these; locale picks the messages.
    assert_eq!(sent, BTreeSet::from(["email", "invitationCode", "locale"]));

    let received: BTreeSet<&str> = profile
        .iter()
        .filter(|e| e.name == "OutputClaim")
        .filter_map(|e| e.attribute("ClaimTypeReferenceId"))
        .collect();
    assert_eq!(
        received,
        BTreeSet::from(["invitationExpires", "invitationKeyId", "invitationKind"])
    );
}

#[test]
fn policy_checks_the_code_before_the_sign_up_page_writes_the_account() {
    let all = policy();
    let sign_up = technical_profile(&all, "LocalAccountSignUpWithLogonEmail");
    let collected = sign_up
        .iter()
        .find(|e| e.name == "OutputClaim")
        .expect("the sign-up page collects no claim");
    assert_eq!(
        collected.attribute("ClaimTypeReferenceId"),
        Some("invitationCode")
    );
    assert_eq!(collected.attribute("Required"), Some("true"));
    let validations: Vec<&str> = sign_up
        .iter()
        .filter(|e| e.name == "ValidationTechnicalProfile")
        .filter_map(|e| e.attribute("ReferenceId"))
        .collect();
    assert_eq!(validations, ["REST-invitegate-VerifyInvitationCode"]);
    // Nothing in the snippet persists the code to the directory.
    assert!(!all.iter().any(|e| e.name == "PersistedClaim"
        && e.attribute("ClaimTypeReferenceId") == Some("invitationCode")));
}

// ---- the Azure Functions package ----

fn function_folders() -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(repo_file("deploy/azure-functions"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("function.json").is_file())
        .collect();
    folders.sort();
    folders
}

#[test]
fn every_documented_route_has_one_post_function() {
    let mut routes = BTreeSet::new();
    for folder in function_folders() {
        let path = folder.join("function.json");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let bindings = json["bindings"].as_array().unwrap();
        let trigger = bindings
            .iter()
            .find(|b| b["type"] == "httpTrigger")
            .unwrap_or_else(|| panic!("{} has no httpTrigger", path.display()));
        assert_eq!(trigger["direction"], "in");
        assert_eq!(trigger["methods"], serde_json::json!(["post"]));
        // Both callers can carry a function key in the URL they are given (?code=).
        assert_eq!(trigger["authLevel"], "function", "{}", path.display());
        assert!(
            bindings
                .iter()
                .any(|b| b["type"] == "http" && b["direction"] == "out")
        );
        let route = trigger["route"].as_str().unwrap();
        assert!(routes.insert(route.to_owned()), "route {route} twice");
    }
    assert_eq!(routes, ROUTES.iter().map(|r| (*r).to_owned()).collect());
}

#[test]
fn the_host_forwards_requests_to_the_handler() {
    let host: serde_json::Value =
        serde_json::from_str(&read("deploy/azure-functions/host.json")).unwrap();
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );
    let package = read("deploy/azure-functions/package.sh");
    assert!(
        package.contains("*/function.json"),
        "package.sh must copy every function"
    );
}

#[test]
fn the_guides_name_the_routes_they_configure() {
    let entra = read("deploy/entra-external-id/README.md");
    assert!(entra.contains("/api/entra/attribute-collection-submit"));
    // The permission's name as Microsoft Graph's permissions reference gives it (one of
    // Microsoft's troubleshooting pages spells it with "Extensions", as docs/CONNECTOR-CONTRACTS.md notes).
    assert!(entra.contains("CustomAuthenticationExtension.Receive.Payload"));
    assert!(entra.contains("99045fe1-7639-4a75-9d4a-577b6ca3810f"));
    let policy = read("deploy/b2c-custom-policy/README.md");
    assert!(policy.contains("/api/b2c/custom-policy"));
    assert!(policy.contains("--client-cert-thumbprints"));
}

#[test]
fn policy_carries_the_client_certificate_variant() {
    let text = read(POLICY);
    assert!(text.contains(r#"<Item Key="AuthenticationType">ClientCertificate</Item>"#));
    assert!(text.contains(
        r#"<Key Id="ClientCertificate" StorageReferenceId="B2C_1A_RestApiClientCertificate" />"#
    ));
}

// ---- the container image ----

#[test]
fn the_image_runs_unprivileged_on_8080_with_a_health_check() {
    let dockerfile = read("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let runtime = instructions
        .iter()
        .rposition(|line| line.starts_with("FROM "))
        .unwrap();
    let runtime = &instructions[runtime..];
    let user = runtime
        .iter()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the runtime stage sets no USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as {user}"
    );
    assert!(runtime.contains(&"EXPOSE 8080"));
    assert!(runtime.iter().any(|line| line.starts_with("HEALTHCHECK ")));
    // The address is a setting, which `healthcheck` and any command given at `docker run`
    // read too, and not a flag of the default command.
    assert!(runtime.contains(&"ENV INVITEGATE_LISTEN=0.0.0.0:8080"));
    assert!(runtime.iter().any(|line| line.starts_with("CMD ")
        && line.contains("\"serve\"")
        && !line.contains("--listen")));
    // The build stage builds the profile it copies the binary from.
    let build = instructions
        .iter()
        .find(|line| line.contains("cargo build"))
        .expect("no cargo build");
    let profile = build
        .split_whitespace()
        .skip_while(|word| *word != "--profile")
        .nth(1)
        .expect("cargo build names no --profile");
    assert!(
        dockerfile.contains(&format!("/{profile}/invitegate")),
        "the binary is not copied from target/.../{profile}/"
    );
    let manifest = read("Cargo.toml");
    assert!(manifest.contains(&format!("[profile.{profile}]")));
    let ignore = read(".dockerignore");
    assert_eq!(
        ignore.lines().find(|line| !line.starts_with('#')),
        Some("*"),
        ".dockerignore must exclude everything not listed"
    );
}
