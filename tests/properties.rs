//! Property tests: hostile text never panics, mint and verify round-trip, a code never admits
//! an audience it was not minted for, and the Entra endpoint never answers 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use invitegate::{
    Audience, Code, EmailAddress, Expiry, KeyRing, Kind, Outcome, VerifyOptions, mint, verify,
};
use proptest::prelude::*;
use time::OffsetDateTime;

fn ring() -> KeyRing {
    KeyRing::parse(
        "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\
         200:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKiw==",
    )
    .expect("ring parses")
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("instant in range")
}

/// A DNS label: letters, digits and inner hyphens, sometimes upper case or non-ASCII.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?",
        1 => "[a-z]{1,4}[äöüéñ][a-z]{0,4}",
    ]
    .prop_filter("no xn-- prefix", |l| {
        !l.to_ascii_lowercase().starts_with("xn--")
    })
}

fn domain(min_labels: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(label(), min_labels..5).prop_map(|labels| labels.join("."))
}

fn email() -> impl Strategy<Value = String> {
    ("[a-zA-Z0-9._%+-]{1,20}", domain(2)).prop_map(|(local, domain)| format!("{local}@{domain}"))
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Email),
        Just(Kind::Domain),
        Just(Kind::DomainAndSubdomains)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), email in any::<String>(), now in any::<i32>()) {
        let outcome = verify(&ring(), &text, &email, at(i64::from(now)), &VerifyOptions::default());
        // Random text essentially never forms a valid code; if it did, it would have to be
        // structurally valid first.
        prop_assert!(!outcome.is_valid() || Code::parse(&text).is_ok());
        let _ = EmailAddress::parse(&email);
        let _ = invitegate::normalize_domain(&email);
        let _ = KeyRing::parse(&text);
    }

    #[test]
    fn code_like_text_never_panics(text in "[0-9A-Za-z -]{0,40}", email in email()) {
        let outcome = verify(&ring(), &text, &email, at(1_790_000_000), &VerifyOptions::default());
        prop_assert!(!outcome.is_valid());
    }

    #[test]
    fn arbitrary_emails_never_panic(local in ".{0,30}", domain in ".{0,30}") {
        let text = format!("{local}@{domain}");
        if let Ok(address) = EmailAddress::parse(&text) {
            // Normalization is idempotent.
            let again = EmailAddress::parse(address.as_str()).expect("a normal address stays valid");
            prop_assert_eq!(again.as_str(), address.as_str());
        }
    }

    #[test]
    fn mint_then_verify_round_trips(
        kind in kind(),
        address in email(),
        sub in prop::collection::vec(label(), 0..3),
        expiry in 1u32..,
        before in 1u32..1_000_000,
    ) {
        let ring = ring();
        let (local, domain) = address.rsplit_once('@').expect("strategy makes an @");
        let audience = match kind {
            Kind::Email => Audience::email(&address),
            _ => Audience::new(kind, domain),
        }.expect("strategy makes valid audiences");
        let code = mint(&ring, &audience, Expiry::from_unix(expiry));
        // Subdomains only for kind 3; an exact match for the others.
        let signer = if kind == Kind::DomainAndSubdomains && !sub.is_empty() {
            format!("{local}@{}.{domain}", sub.join("."))
        } else {
            address.clone()
        };
        let now = at(i64::from(expiry) - i64::from(before));
        let typed = code.to_string().to_lowercase().replace('-', " ");
        let outcome = verify(&ring, &typed, &signer, now, &VerifyOptions::default());
        let Outcome::Valid(grant) = outcome else {
            return Err(TestCaseError::fail(format!("{kind:?} {signer}: {outcome:?}")));
        };
        prop_assert_eq!(grant.audience, audience);
        prop_assert_eq!(grant.key_id, 7);
        prop_assert_eq!(grant.expiry.unix(), expiry);
        prop_assert_eq!(Code::parse(&typed).expect("parses"), code);
    }

    #[test]
    fn a_code_never_verifies_for_a_different_audience(
        kind in kind(),
        minted_for in email(),
        other in email(),
    ) {
        let ring = ring();
        let (_, minted_domain) = minted_for.rsplit_once('@').expect("@");
        let audience = Audience::new(kind, if kind == Kind::Email { &minted_for } else { minted_domain })
            .expect("valid audience");
        let other_address = EmailAddress::parse(&other).expect("valid address");
        let admitted = match kind {
            Kind::Email => other_address.as_str() == audience.value(),
            Kind::Domain => other_address.domain() == audience.value(),
            Kind::DomainAndSubdomains => {
                let d = other_address.domain();
                d == audience.value() || d.ends_with(&format!(".{}", audience.value()))
            }
        };
        prop_assume!(!admitted);
        let code = mint(&ring, &audience, Expiry::from_unix(u32::MAX));
        let outcome = verify(&ring, &code.to_string(), &other, at(0), &VerifyOptions::default());
        prop_assert_eq!(outcome, Outcome::NotValid);
    }

    #[test]
    fn display_then_parse_is_identity_for_any_valid_header(
        kind in kind(), key_id in any::<u8>(), expiry in any::<u32>(), tag in any::<[u8; 9]>()
    ) {
        // Build the text independently of minting: header + random tag + check symbol.
        let mut bytes = [0u8; 15];
        bytes[..6].copy_from_slice(&Code::header(kind, key_id, Expiry::from_unix(expiry)));
        bytes[6..].copy_from_slice(&tag);
        let data = base32::encode(base32::Alphabet::Crockford, &bytes);
        // Find the one check symbol that parses: exactly one of 32 must.
        let parsed: Vec<Code> = "0123456789ABCDEFGHJKMNPQRSTVWXYZ".chars()
            .filter_map(|c| Code::parse(&format!("{data}{c}")).ok())
            .collect();
        prop_assert_eq!(parsed.len(), 1);
        let code = parsed[0];
        prop_assert_eq!(code.as_bytes(), &bytes);
        prop_assert_eq!(Code::parse(&code.to_string()).expect("canonical parses"), code);
        prop_assert_eq!(code.kind(), kind);
        prop_assert_eq!(code.key_id(), key_id);
        prop_assert_eq!(code.expiry().unix(), expiry);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The fast path that skips UTS #46 must give exactly what the `idna` crate gives.
    #[test]
    fn plain_ldh_fast_path_agrees_with_idna(domain in "[a-z0-9.-]{1,24}|(xn--)?[a-z0-9-]{0,6}(\\.(xn--)?[a-z0-9-]{0,6}){0,3}") {
        if invitegate::audience::is_plain_ldh(&domain) {
            let by_idna = idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::URL);
            let by_idna = by_idna.ok();
            prop_assert_eq!(by_idna.as_deref(), Some(domain.as_str()));
        }
    }
}

/// A domain whose labels and whole length straddle the DNS limits: short labels, labels of 60
/// to 66 octets, and labels whose Punycode form is about that long (57 `ä` make 63 octets),
/// up to five of them (so totals run from a few octets to about 330), separated by `.` or by
/// the ideographic full stop that UTS #46 maps to it.
fn domain_near_dns_limits() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        4 => "[a-zA-Z0-9]{1,8}",
        2 => "[a-zA-Z0-9]{60,66}",
        1 => "[a-z]{20,40}[äöü][a-z]{0,20}",
        1 => "[äöüÄ]{54,61}",
    ];
    prop::collection::vec((label, prop::bool::weighted(0.9)), 1..6).prop_map(|labels| {
        let mut domain = String::new();
        for (label, ascii_dot) in labels {
            if !domain.is_empty() {
                domain.push(if ascii_dot { '.' } else { '\u{3002}' });
            }
            domain.push_str(&label);
        }
        domain
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Domain normalization agrees with the `idna` crate's own UTS #46 ToASCII with
    /// VerifyDnsLength on, both on the fast path (plain lower-case input) and on the full one.
    #[test]
    fn dns_limits_agree_with_idna(domain in domain_near_dns_limits(), lower in any::<bool>()) {
        let domain = if lower { domain.to_lowercase() } else { domain };
        let ours = invitegate::normalize_domain(&domain).ok();
        let by_idna = idna::uts46::Uts46::new()
            .to_ascii(
                domain.as_bytes(),
                idna::AsciiDenyList::URL,
                idna::uts46::Hyphens::Allow,
                idna::uts46::DnsLength::Verify,
            )
            .ok();
        prop_assert_eq!(ours.as_deref(), by_idna.as_deref(), "{}", domain);
    }

    /// Addresses near the DNS limits normalize the same on the fast path (already normal) and
    /// the full one (upper case, padding, trailing dot): both refuse, or both give one address.
    #[test]
    fn dns_limits_hold_on_every_path(
        local in "[a-zA-Z0-9._+-]{1,12}",
        domain in domain_near_dns_limits(),
        dot in any::<bool>(),
    ) {
        let normal = format!("{}@{}", local.to_lowercase(), domain.to_lowercase());
        let spelled = format!(" {local}@{domain}{} ", if dot { "." } else { "" });
        let from_normal = EmailAddress::parse(&normal).map(|a| a.as_str().to_owned());
        let from_spelled = EmailAddress::parse(&spelled).map(|a| a.as_str().to_owned());
        prop_assert_eq!(from_normal.is_ok(), from_spelled.is_ok(), "{} / {}", normal, spelled);
        if let (Ok(a), Ok(b)) = (&from_normal, &from_spelled) {
            prop_assert_eq!(a, b);
        }
        // And both agree with the domain alone.
        let domain_ok = invitegate::normalize_domain(&domain).is_ok();
        prop_assert_eq!(from_spelled.is_ok(), domain_ok, "{}", spelled);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// However an address is spelled (case, spacing, trailing dot), normalizing it gives what
    /// normalizing its normal form gives: the fast path for normal input agrees with the full
    /// path for every other spelling.
    #[test]
    fn normalization_agrees_across_spellings(
        local in "[a-zA-Z0-9._+-]{1,12}",
        domain in "[a-zA-Z0-9-]{1,8}(\\.[a-zA-Z0-9-]{1,8}){1,3}",
        upper in any::<bool>(),
        dot in any::<bool>(),
        pad in any::<bool>(),
    ) {
        let spelled = format!(
            "{}{}@{}{}{}",
            if pad { "  " } else { "" },
            if upper { local.to_uppercase() } else { local.clone() },
            if upper { domain.to_uppercase() } else { domain.clone() },
            if dot { "." } else { "" },
            if pad { "\t" } else { "" },
        );
        let normal = format!("{}@{}", local.to_lowercase(), domain.to_lowercase());
        let from_spelled = EmailAddress::parse(&spelled).map(|a| (a.as_str().to_owned(), a.domain().to_owned()));
        let from_normal = EmailAddress::parse(&normal).map(|a| (a.as_str().to_owned(), a.domain().to_owned()));
        prop_assert_eq!(from_spelled, from_normal);
    }
}

/// The Entra endpoint behind its real bearer check never answers 5xx, whatever the body: the
/// property the user flow has in `api.rs`, over the OnAttributeCollectionSubmit shape with
/// hostile values at every level, and over arbitrary bytes.
mod entra_never_a_5xx {
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use invitegate::connector::AttributeNames;
    use invitegate::connector::entra::Entra;
    use invitegate::decision::Verifier;
    use invitegate::server::auth::{Auth, BearerAuth, BearerConfig, DevSigner, JwksSource};
    use invitegate::server::{Config, ENTRA_PATH, Endpoint, routes};
    use invitegate::{Audience, Expiry, mint};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const APP_ID: &str = "93fd07aa333c409d955d96008fd08dd9";
    const ATTR: &str = "extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode";
    const ISSUER: &str = "https://contoso.ciamlogin.com/30000000-0000-0000-0000-000000000003/v2.0";
    const AUDIENCE: &str = "api://invites.contoso.com/66666666-7777-8888-9999-000000000000";
    const ACTIONS: [&str; 4] = [
        "microsoft.graph.attributeCollectionSubmit.continueWithDefaultBehavior",
        "microsoft.graph.attributeCollectionSubmit.modifyAttributeValues",
        "microsoft.graph.attributeCollectionSubmit.showBlockPage",
        "microsoft.graph.attributeCollectionSubmit.showValidationError",
    ];

    /// One signing key, its bearer check and a token for the whole run: key generation is slow.
    fn caller() -> &'static (Arc<BearerAuth>, String) {
        static CALLER: OnceLock<(Arc<BearerAuth>, String)> = OnceLock::new();
        CALLER.get_or_init(|| {
            let signer = DevSigner::generate().unwrap();
            let config = BearerConfig::new(
                ISSUER.to_owned(),
                vec![AUDIENCE.to_owned()],
                JwksSource::Inline(signer.jwks_json()),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let auth = runtime.block_on(BearerAuth::start(config)).unwrap();
            let token = signer.token(ISSUER, AUDIENCE, Duration::from_secs(3600));
            (auth, format!("Bearer {token}"))
        })
    }

    fn valid_code() -> String {
        mint(
            &super::ring(),
            &Audience::email("alice@contoso.com").unwrap(),
            Expiry::from_unix(u32::MAX),
        )
        .to_string()
    }

    fn config() -> Config {
        let mut config = Config::new(Verifier::new(super::ring()));
        config.entra = Some(Endpoint::new(
            Auth::Bearer(Arc::clone(&caller().0)),
            Entra {
                attribute: AttributeNames::new("InvitationCode", Some(APP_ID)),
                keep_code_attribute: false,
                email_source: Default::default(),
            },
        ));
        config
    }

    /// Any JSON value, strings often ones the endpoint looks for.
    fn hostile() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            "[0-9A-Za-z -]{20,35}".prop_map(Value::from),
            Just(Value::from(valid_code())),
            Just(Value::from("alice@contoso.com")),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-zA-Z_@.]{1,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `shaped` most of the time, any value otherwise.
    fn or_hostile(shaped: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
        prop_oneof![3 => shaped, 1 => hostile()].boxed()
    }

    fn attribute() -> BoxedStrategy<Value> {
        let value = or_hostile(prop_oneof![
            Just(json!(valid_code())),
            "[0-9A-Za-z -]{0,35}".prop_map(Value::from)
        ]);
        or_hostile(
            (
                prop_oneof![Just("@odata.type"), Just("@odata.Type")],
                value,
                or_hostile(Just(json!("directorySchemaExtension"))),
            )
                .prop_map(|(odata, value, kind)| {
                    json!({
                        odata: "microsoft.graph.stringDirectoryAttributeValue",
                        "value": value,
                        "attributeType": kind,
                    })
                }),
        )
    }

    fn identity() -> BoxedStrategy<Value> {
        or_hostile(
            (
                or_hostile(prop_oneof![Just(json!("email")), Just(json!("federated"))]),
                or_hostile(prop_oneof![
                    Just(json!("alice@contoso.com")),
                    "[a-z@.]{0,30}".prop_map(Value::from)
                ]),
            )
                .prop_map(|(sign_in, id)| {
                    json!({"signInType": sign_in, "issuer": "contoso.onmicrosoft.com",
                        "issuerAssignedId": id})
                }),
        )
    }

    /// OnAttributeCollectionSubmit requests with any part replaced by a hostile value.
    fn entra_body() -> impl Strategy<Value = Vec<u8>> {
        let attributes = or_hostile(
            (
                prop::option::of(attribute()),
                prop::collection::btree_map("[a-zA-Z_]{1,20}", attribute(), 0..3),
            )
                .prop_map(|(code, others)| {
                    let mut map: serde_json::Map<String, Value> = others.into_iter().collect();
                    if let Some(code) = code {
                        map.insert(ATTR.to_owned(), code);
                    }
                    Value::Object(map)
                }),
        );
        let identities = or_hostile(prop::collection::vec(identity(), 0..3).prop_map(Value::from));
        let sign_up = or_hostile(
            (attributes, identities).prop_map(|(a, i)| json!({"attributes": a, "identities": i})),
        );
        let context = or_hostile(
            or_hostile(Just(json!("fr-FR")))
                .prop_map(|locale| json!({"correlationId": "c", "client": {"locale": locale}})),
        );
        let data = or_hostile((sign_up, context).prop_map(|(sign_up, context)| {
            json!({
                "@odata.type": "microsoft.graph.onAttributeCollectionSubmitCalloutData",
                "tenantId": "30000000-0000-0000-0000-000000000003",
                "authenticationContext": context,
                "userSignUpInfo": sign_up,
            })
        }));
        let kind = or_hostile(Just(json!(
            "microsoft.graph.authenticationEvent.attributeCollectionSubmit"
        )));
        (kind, data).prop_map(|(kind, data)| {
            serde_json::to_vec(&json!({"type": kind, "source": "/tenants/x", "data": data}))
                .unwrap()
        })
    }

    fn reply(body: Vec<u8>) -> (u16, Option<String>, Vec<u8>) {
        // Outside the runtime: the first call starts the bearer check in a runtime of its own.
        let config = config();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = warp::test::request()
                .method("POST")
                .path(ENTRA_PATH)
                .header("authorization", &caller().1)
                .body(body)
                .reply(&routes(config))
                .await;
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (
                response.status().as_u16(),
                content_type,
                response.body().to_vec(),
            )
        })
    }

    /// A 200 with exactly one of the four actions, or the 400 of an unreadable body.
    fn assert_answer(
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), TestCaseError> {
        prop_assert!(matches!(status, 200 | 400), "status {status}");
        prop_assert_eq!(content_type, Some("application/json"));
        let json: Value =
            serde_json::from_slice(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!body.windows(4).any(|w| w == b"null"), "{json}");
        if status == 200 {
            prop_assert_eq!(
                &json["data"]["@odata.type"],
                "microsoft.graph.onAttributeCollectionSubmitResponseData"
            );
            let actions = json["data"]["actions"].as_array();
            prop_assert_eq!(actions.map(Vec::len), Some(1), "{}", json);
            let action = json["data"]["actions"][0]["@odata.type"].as_str();
            prop_assert!(action.is_some_and(|a| ACTIONS.contains(&a)), "{}", json);
        } else {
            prop_assert_eq!(&json["error"], "bad_request", "{}", json);
        }
        Ok(())
    }

    #[test]
    fn the_caller_is_authenticated() {
        // The property runs behind the real check: a valid body gets a decision, not a 401.
        let body = json!({
            "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
            "data": {"userSignUpInfo": {
                "attributes": {ATTR: {"value": valid_code()}},
                "identities": [{"signInType": "email", "issuerAssignedId": "alice@contoso.com"}],
            }},
        });
        let (status, _, body) = reply(serde_json::to_vec(&body).unwrap());
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 200, "{json}");
        assert_eq!(
            json["data"]["actions"][0]["@odata.type"], ACTIONS[1],
            "{json}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_get_a_5xx(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let (status, content_type, body) = reply(body);
            assert_answer(status, content_type.as_deref(), &body)?;
        }

        #[test]
        fn hostile_entra_bodies_never_get_a_5xx(body in entra_body()) {
            let (status, content_type, body) = reply(body);
            assert_answer(status, content_type.as_deref(), &body)?;
        }
    }
}
