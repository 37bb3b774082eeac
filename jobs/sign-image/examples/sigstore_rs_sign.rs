//! The benchmark's peer: signs an image the way sigstore-rs's cosign client
//! does (`examples/cosign/sign` of sigstore-rs, keeping existing signatures),
//! so bench/sign-image/run.sh can count its registry requests beside
//! sign-image's.
//!
//! Usage: `sigstore_rs_sign IMAGE KEY_FILE` over plain HTTP; the key's
//! password comes from `COSIGN_PASSWORD`.

use sigstore::cosign::constraint::PrivateKeySigner;
use sigstore::cosign::{Constraint, CosignCapabilities, SignatureLayer};
use sigstore::crypto::SigningScheme;
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, image, key_file] = args.as_slice() else {
        return Err("usage: sigstore_rs_sign IMAGE KEY_FILE".into());
    };
    let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
    let pem = std::fs::read(key_file)?;
    let signer = SigStoreKeyPair::from_encrypted_pem(&pem, password.as_bytes())?
        .to_sigstore_signer(&SigningScheme::default())?;
    let config = ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    };
    let mut client = sigstore::cosign::ClientBuilder::default()
        .with_oci_client_config(config)
        .build()?;
    let reference: OciReference = image.parse()?;
    let auth = Auth::Anonymous;
    let (sig_image, digest) = client.triangulate(&reference, &auth).await?;
    let mut layers = client
        .trusted_signature_layers(&auth, &reference)
        .await
        .unwrap_or_default();
    let mut layer = SignatureLayer::new_unsigned(&reference, &digest)?;
    PrivateKeySigner::new_with_signer(signer).add_constraint(&mut layer)?;
    layers.push(layer);
    client
        .push_signature(None, &auth, &sig_image, layers)
        .await?;
    println!("{sig_image}");
    Ok(())
}
