//! Interoperability with sigstore-rs, a cosign implementation we did not
//! write. Its crypto is aws-lc-rs (a BoringSSL descendant), independent of
//! the RustCrypto p256/scrypt/secretbox code sign-image uses.
//!
//! Both directions, at three levels: encrypted keys, raw signatures over
//! payloads, and whole `.sig` signatures in a real registry.

mod common;

use common::*;
use harness::registry::{ImageSpec, TestRegistry, push_image};
use kit::secret::Secret;
use sign_image::keys::{PrivateKey, PublicKey};
use sign_image::payload::SimpleSigning;
use sigstore::cosign::constraint::PrivateKeySigner;
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::{Constraint, CosignCapabilities, SignatureLayer};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};

const P256: SigningScheme = SigningScheme::ECDSA_P256_SHA256_ASN1;
/// sha256 of the 2-byte config `{}`.
const EMPTY_CONFIG_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

fn payload(n: u32) -> Vec<u8> {
    let image = kit::reference::ImageRef::parse("registry.example/team/app:1").unwrap();
    let digest = kit::reference::Digest::sha256_hex(format!("{n:064x}")).unwrap();
    let ann = std::collections::BTreeMap::from([("n".to_string(), n.to_string())]);
    SimpleSigning::new(&image, &digest, &ann).to_bytes()
}

#[test]
fn our_encrypted_key_opens_in_sigstore_rs() {
    let ours = PrivateKey::generate().unwrap();
    // cosign's own parameters (sigstore-rs accepts only N = 32768 or 65536).
    let pem = ours.to_encrypted_pem(&Secret::new("interop-pass")).unwrap();
    let theirs = SigStoreKeyPair::from_encrypted_pem(pem.as_bytes(), b"interop-pass")
        .expect("sigstore-rs decrypts our key");
    assert_eq!(
        theirs.public_key_to_der().unwrap(),
        ours.public().to_spki_der()
    );
    assert!(SigStoreKeyPair::from_encrypted_pem(pem.as_bytes(), b"wrong").is_err());
    // Our public key PEM reads there too.
    CosignVerificationKey::from_pem(ours.public().to_pem().as_bytes(), &P256).unwrap();
}

#[test]
fn sigstore_rs_encrypted_key_opens_in_ours() {
    let signer = P256.create_signer().unwrap();
    let theirs = signer.to_sigstore_keypair().unwrap();
    let pem = theirs.private_key_to_encrypted_pem(b"their-pass").unwrap();
    assert!(pem.contains("ENCRYPTED SIGSTORE PRIVATE KEY"));
    let ours =
        PrivateKey::from_pem(pem.as_bytes(), &Secret::new("their-pass"), "sigstore.key").unwrap();
    assert_eq!(
        ours.public().to_spki_der(),
        theirs.public_key_to_der().unwrap()
    );
    let e = PrivateKey::from_pem(pem.as_bytes(), &Secret::new("nope"), "sigstore.key").unwrap_err();
    assert!(
        e.to_string().contains("wrong password or not a cosign key"),
        "{e}"
    );
    // Their public key PEM and unencrypted PKCS#8 PEM read here.
    let public = PublicKey::from_pem(
        theirs.public_key_to_pem().unwrap().as_bytes(),
        "sigstore.pub",
    )
    .unwrap();
    assert_eq!(public, ours.public());
    let plain = theirs.private_key_to_pem().unwrap();
    assert_eq!(
        PrivateKey::from_pem(plain.as_bytes(), &Secret::default(), "p")
            .unwrap()
            .public(),
        ours.public()
    );
}

#[test]
fn signatures_cross_verify_both_ways() {
    let ours = PrivateKey::generate().unwrap();
    let our_key_there =
        CosignVerificationKey::from_pem(ours.public().to_pem().as_bytes(), &P256).unwrap();
    let signer = P256.create_signer().unwrap();
    let their_key_here = PublicKey::from_spki_der(
        &signer
            .to_sigstore_keypair()
            .unwrap()
            .public_key_to_der()
            .unwrap(),
    )
    .unwrap();
    // Many payloads: DER lengths vary (leading zeros, high/low s); every one must agree.
    for n in 0..40 {
        let p = payload(n);
        let sig = ours.sign_base64(&p);
        our_key_there
            .verify_signature(Signature::Base64Encoded(sig.as_bytes()), &p)
            .unwrap_or_else(|e| panic!("sigstore-rs rejects our signature #{n}: {e}"));
        let mut tampered = p.clone();
        tampered[10] ^= 1;
        assert!(
            our_key_there
                .verify_signature(Signature::Base64Encoded(sig.as_bytes()), &tampered)
                .is_err()
        );

        let theirs = signer.sign(&p).unwrap();
        assert!(
            their_key_here.verify(&p, &theirs),
            "we reject sigstore-rs signature #{n}"
        );
        assert!(!their_key_here.verify(&tampered, &theirs));
        assert!(
            !ours.public().verify(&p, &theirs),
            "wrong key must not verify"
        );
    }
}

fn sigstore_client() -> sigstore::cosign::Client {
    let config = ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    };
    sigstore::cosign::ClientBuilder::default()
        .with_oci_client_config(config)
        .build()
        .unwrap()
}

/// Whether sigstore-rs finds a signature layer on `image` that `public_pem` verifies.
async fn sigstore_verifies(image: &str, public_pem: &str) -> bool {
    let mut client = sigstore_client();
    let image: OciReference = image.parse().unwrap();
    let layers = client
        .trusted_signature_layers(&Auth::Anonymous, &image)
        .await
        .expect("sigstore-rs reads the .sig tag");
    let constraints: VerificationConstraintVec = vec![Box::new(
        PublicKeyVerifier::new(public_pem.as_bytes(), &P256).unwrap(),
    )];
    sigstore::cosign::verify_constraints(&layers, constraints.iter()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_signatures_cross_verify_with_sigstore_rs() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let img = push_image(
        &reg,
        "team/interop",
        "1.0",
        &ImageSpec {
            layer_sizes: vec![256],
            seed: 11,
            ..ImageSpec::default()
        },
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let ours = keys(dir.path(), "ours", "ours-pass");
    let image = format!("{host}/team/interop:1.0");

    // 1. sign-image signs; sigstore-rs verifies with our public key.
    let r = job(dir.path())
        .args([
            "sign",
            &image,
            "--insecure-registry",
            &host,
            "--key",
            ours.key_path.to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", &ours.password)
        .run();
    assert_code(&r, 0);
    // Our .sig image has the constant `{}` config (as sigstore-rs writes it)…
    let tag = img.digest.replace(':', "-") + ".sig";
    let raw = harness::registry::skopeo_raw(&format!("{host}/team/interop:{tag}"), None);
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["config"]["digest"], EMPTY_CONFIG_DIGEST, "{m}");
    assert_eq!(m["config"]["size"], 2);
    // …and sigstore-rs verifies the signature.
    let our_pub = std::fs::read_to_string(&ours.pub_path).unwrap();
    assert!(
        sigstore_verifies(&image, &our_pub).await,
        "sigstore-rs must accept sign-image's signature"
    );

    // A key that did not sign is refused by sigstore-rs too (the check can fail).
    let stranger = PrivateKey::generate().unwrap().public().to_pem();
    assert!(!sigstore_verifies(&image, &stranger).await);

    // 2. sigstore-rs signs with its own key (keeping our layer); sign-image verifies both.
    let signer = P256.create_signer().unwrap();
    let their_pub = signer
        .to_sigstore_keypair()
        .unwrap()
        .public_key_to_pem()
        .unwrap();
    let mut client = sigstore_client();
    let reference: OciReference = image.parse().unwrap();
    let (sig_image, digest) = client
        .triangulate(&reference, &Auth::Anonymous)
        .await
        .unwrap();
    assert_eq!(digest, img.digest);
    let existing = client
        .trusted_signature_layers(&Auth::Anonymous, &reference)
        .await
        .unwrap();
    let mut layer = SignatureLayer::new_unsigned(&reference, &digest).unwrap();
    PrivateKeySigner::new_with_signer(signer)
        .add_constraint(&mut layer)
        .unwrap();
    let mut all = existing;
    all.push(layer);
    client
        .push_signature(None, &Auth::Anonymous, &sig_image, all)
        .await
        .expect("sigstore-rs pushes");

    let their_pub_path = dir.path().join("theirs.pub");
    std::fs::write(&their_pub_path, &their_pub).unwrap();
    for key in [&their_pub_path, &ours.pub_path] {
        let r = job(dir.path())
            .args([
                "verify",
                &image,
                "--insecure-registry",
                &host,
                "--key",
                key.to_str().unwrap(),
            ])
            .run();
        assert_code(&r, 0);
        assert!(r.stdout.contains(&img.digest), "{}", r.stdout);
    }

    // 3. sign-image appends to sigstore-rs's manifest; sigstore-rs still verifies every key.
    let more = keys(dir.path(), "more", "");
    let r = job(dir.path())
        .args([
            "sign",
            &image,
            "--insecure-registry",
            &host,
            "--key",
            more.key_path.to_str().unwrap(),
        ])
        .run();
    assert_code(&r, 0);
    for pem in [
        &our_pub,
        &their_pub,
        &std::fs::read_to_string(&more.pub_path).unwrap(),
    ] {
        assert!(sigstore_verifies(&image, pem).await);
    }
}

/// The config go-containerregistry writes for cosign's signature image
/// (`empty.Image` + `mutate.Append`): empty platform, zero timestamps, one
/// history entry and one diff id per layer, in Go's field order.
fn ggcr_config(diff_ids: &[&str]) -> Vec<u8> {
    let history = vec![r#"{"created":"0001-01-01T00:00:00Z"}"#; diff_ids.len()].join(",");
    format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{history}],"os":"","rootfs":{{"type":"layers","diff_ids":{}}},"config":{{}}}}"#,
        serde_json::to_string(diff_ids).unwrap()
    )
    .into_bytes()
}

/// A `.sig` image laid out as the cosign CLI writes it (config with
/// `rootfs.diff_ids`), signed by sigstore-rs's signer: sign-image appends its
/// own signature, keeps the old layer byte for byte, writes the `{}` config,
/// and both signatures verify with sigstore-rs and with sign-image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appending_to_a_cosign_layout_sig_image_keeps_and_verifies_both() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let img = push_image(
        &reg,
        "team/cosigned",
        "1.0",
        &ImageSpec {
            layer_sizes: vec![300],
            seed: 21,
            ..ImageSpec::default()
        },
        None,
    );
    let image = format!("{host}/team/cosigned:1.0");
    let digest: kit::reference::Digest = img.digest.parse().unwrap();

    // cosign's first signature: payload (byte-identical to cosign's, see
    // a_signature_made_by_the_cosign_cli_verifies_and_our_payload_is_byte_identical), signed by sigstore-rs, ggcr config.
    let image_ref = kit::reference::ImageRef::parse(&image).unwrap();
    let payload = SimpleSigning::new(&image_ref, &digest, &Default::default()).to_bytes();
    let signer = P256.create_signer().unwrap();
    let their_pub = signer
        .to_sigstore_keypair()
        .unwrap()
        .public_key_to_pem()
        .unwrap();
    let sig = base64_encode(&signer.sign(&payload).unwrap());
    let payload_digest = registry::sha256(&payload).to_string();
    let config = ggcr_config(&[&payload_digest]);
    let config_digest = registry::sha256(&config).to_string();
    let old_layer = format!(
        r#"{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":{},"digest":"{payload_digest}","annotations":{{"dev.cosignproject.cosign/signature":"{sig}"}}}}"#,
        payload.len()
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{config_digest}"}},"layers":[{old_layer}]}}"#,
        config.len()
    );
    let client = registry::Registry::new(
        &host,
        None,
        &registry::ClientOptions {
            insecure_registries: vec![host.clone()],
            ..Default::default()
        },
        &kit::env::MapEnv::default(),
    )
    .unwrap();
    let tag = img.digest.replace(':', "-") + ".sig";
    client.push_blob("team/cosigned", payload).await.unwrap();
    client.push_blob("team/cosigned", config).await.unwrap();
    client
        .push_manifest(
            "team/cosigned",
            &tag,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.into_bytes(),
        )
        .await
        .unwrap();
    assert!(
        sigstore_verifies(&image, &their_pub).await,
        "fixture verifies"
    );

    // sign-image appends.
    let dir = tempfile::tempdir().unwrap();
    let ours = keys(dir.path(), "ours", "append-pass");
    let r = job(dir.path())
        .args(["sign", &image, "--insecure-registry", &host, "--key"])
        .arg(&ours.key_path)
        .env("COSIGN_PASSWORD", &ours.password)
        .run();
    assert_code(&r, 0);
    assert!(r.stderr.contains("(1 before)"), "{}", r.stderr);

    let raw = harness::registry::skopeo_raw(&format!("{host}/team/cosigned:{tag}"), None);
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["config"]["digest"], EMPTY_CONFIG_DIGEST, "{m}");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{m}");
    assert_eq!(
        layers[0],
        serde_json::from_str::<serde_json::Value>(&old_layer).unwrap()
    );
    // The old layer's JSON is carried over byte for byte.
    assert!(String::from_utf8(raw).unwrap().contains(&old_layer));

    let our_pub = std::fs::read_to_string(&ours.pub_path).unwrap();
    let their_pub_path = dir.path().join("theirs.pub");
    std::fs::write(&their_pub_path, &their_pub).unwrap();
    for (pem, path) in [(&their_pub, &their_pub_path), (&our_pub, &ours.pub_path)] {
        assert!(sigstore_verifies(&image, pem).await);
        let r = job(dir.path())
            .args(["verify", &image, "--insecure-registry", &host, "--key"])
            .arg(path)
            .run();
        assert_code(&r, 0);
    }
    let stranger = PrivateKey::generate().unwrap().public().to_pem();
    assert!(!sigstore_verifies(&image, &stranger).await);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn keys_written_by_cosign_and_sigstore_rs_open() {
    // tests/data/README.md says where these come from; the first is cosign CLI output (N=65536).
    for (file, password) in [
        ("cosign_generated_encrypted_empty_private.key", ""),
        ("ecdsa_encrypted_private.key", "123"),
    ] {
        let pem =
            std::fs::read(format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let ours = PrivateKey::from_pem(&pem, &Secret::new(password), file)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let theirs = SigStoreKeyPair::from_encrypted_pem(&pem, password.as_bytes()).unwrap();
        assert_eq!(
            ours.public().to_spki_der(),
            theirs.public_key_to_der().unwrap(),
            "{file}"
        );
        let p = payload(7);
        let their_key =
            CosignVerificationKey::from_pem(theirs.public_key_to_pem().unwrap().as_bytes(), &P256)
                .unwrap();
        their_key
            .verify_signature(
                Signature::Base64Encoded(ours.sign_base64(&p).as_bytes()),
                &p,
            )
            .unwrap();
        if !password.is_empty() {
            // scrypt is slow in debug builds: one wrong-password check is enough.
            let e = PrivateKey::from_pem(&pem, &Secret::new("not-it"), file)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("wrong password or not a cosign key") && !e.contains("not-it"),
                "{e}"
            );
        }
    }
}

/// A signature the cosign CLI (Go) made with a key, as published in
/// sigstore-rs 0.15's own tests (`cosign/signature_layers.rs`,
/// `build_correct_signature_layer_without_bundle`, Apache-2.0): cosign's
/// payload for `registry-testing.svc.lan/busybox@sha256:f3cf…` with no
/// annotations, its base64 DER ECDSA signature and the public key. Our
/// payload writer must produce the very bytes cosign signed (Go's field order,
/// `"optional":null`), and our verifier must accept cosign's signature over them.
#[test]
fn a_signature_made_by_the_cosign_cli_verifies_and_our_payload_is_byte_identical() {
    const COSIGN_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----
";
    const COSIGN_SIGNATURE: &str = "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";
    let image = kit::reference::ImageRef::parse("registry-testing.svc.lan/busybox").unwrap();
    let digest: kit::reference::Digest =
        "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"
            .parse()
            .unwrap();
    let ours = SimpleSigning::new(&image, &digest, &Default::default()).to_bytes();
    assert_eq!(
        String::from_utf8(ours.clone()).unwrap(),
        r#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#
    );
    let key = PublicKey::from_pem(COSIGN_PUBLIC_KEY.as_bytes(), "cosign fixture").unwrap();
    assert!(
        key.verify_base64(&ours, COSIGN_SIGNATURE),
        "cosign's signature does not verify over our payload bytes"
    );
    // One byte off (another digest) and it must not verify.
    let other: kit::reference::Digest =
        "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06c"
            .parse()
            .unwrap();
    let tampered = SimpleSigning::new(&image, &other, &Default::default()).to_bytes();
    assert!(!key.verify_base64(&tampered, COSIGN_SIGNATURE));
    // cosign's bytes parse back to the identity and digest verify compares.
    let parsed = SimpleSigning::parse(&ours).unwrap();
    assert_eq!(
        parsed.critical.identity.docker_reference,
        "registry-testing.svc.lan/busybox"
    );
    assert_eq!(
        parsed.critical.image.docker_manifest_digest,
        digest.to_string()
    );
}
