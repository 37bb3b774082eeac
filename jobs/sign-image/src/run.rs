//! The work: each command against the registry (or the file system for
//! generate-key-pair), its report printed, and the outcome.

use kit::env::Env;
use kit::job::Outcome;
use kit::joblog;

use crate::config::Config;
use crate::error::Error;
use crate::{ops, report};

pub async fn run(config: Config, env: &dyn Env) -> Result<Outcome, Error> {
    match config {
        Config::Sign(cfg) => {
            let _section = joblog::Section::start(
                "sign_image_sign",
                &format!("sign-image sign {}", cfg.image),
                false,
            );
            let r = ops::sign(&cfg, env).await?;
            report::signed(&r);
            Ok(Outcome::Done)
        }
        Config::Verify(cfg) => {
            let _section = joblog::Section::start(
                "sign_image_verify",
                &format!("sign-image verify {}", cfg.image),
                false,
            );
            let r = ops::verify(&cfg, env).await?;
            report::verified(&r);
            Ok(match r.refusal {
                Some(refusal) => Outcome::Refused(refusal.to_string()),
                None => Outcome::Done,
            })
        }
        Config::Attest(cfg) => {
            let _section = joblog::Section::start(
                "sign_image_attest",
                &format!("sign-image attest {}", cfg.image),
                false,
            );
            let r = ops::attest(&cfg, env).await?;
            report::attested(&r);
            Ok(Outcome::Done)
        }
        Config::VerifyAttestation(cfg) => {
            let _section = joblog::Section::start(
                "sign_image_verify_attestation",
                &format!("sign-image verify-attestation {}", cfg.image),
                false,
            );
            let r = ops::verify_attestation(&cfg, env).await?;
            report::verified(&r);
            Ok(match r.refusal {
                Some(refusal) => Outcome::Refused(refusal.to_string()),
                None => Outcome::Done,
            })
        }
        Config::GenerateKeyPair(cfg) => {
            let public = ops::generate_key_pair(&cfg)?;
            report::generated(&cfg.key_path, &cfg.pub_path, &public);
            Ok(Outcome::Done)
        }
    }
}
