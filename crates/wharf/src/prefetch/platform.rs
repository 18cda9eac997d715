//! Which children of an index a prefetch pulls: this machine's platform, the one given with
//! `--platform`, or all of them. Reading the manifest itself is `wharf_oci::manifest`'s.

use wharf_oci::manifest::{Child, Platform, normalize_arch};

/// Which children of an index to pull.
pub(super) enum Want {
    One(Platform),
    All,
}

/// This machine's platform, in OCI words (x86_64 is amd64, aarch64 is arm64).
pub(super) fn host() -> Platform {
    Platform {
        os: "linux".to_owned(),
        architecture: normalize_arch(std::env::consts::ARCH).to_owned(),
        variant: None,
    }
}

/// The children a pull for `want` takes, or why none fits.
pub(super) fn select<'a>(children: &'a [Child], want: &Want) -> Result<Vec<&'a Child>, String> {
    let Want::One(platform) = want else {
        return Ok(children.iter().collect());
    };
    match children
        .iter()
        .find(|c| c.platform.as_ref().is_some_and(|p| platform.accepts(p)))
    {
        Some(c) => Ok(vec![c]),
        None => {
            let have: Vec<String> = children
                .iter()
                .filter_map(|c| c.platform.as_ref().map(Platform::to_string))
                .collect();
            Err(format!(
                "no {platform} image in the index (it has {}); use --platform or --all-platforms",
                have.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_oci::manifest::{self, Manifest};
    use wharf_oci::media;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn reads_an_index_and_picks_a_platform() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [
                {"digest": d('a'), "size": 1, "mediaType": media::OCI_MANIFEST,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": d('b'), "size": 1, "mediaType": media::OCI_MANIFEST,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            ]
        })
        .to_string();
        let Manifest::Index(children) = manifest::parse("", body.as_bytes()).expect("index") else {
            panic!("not an index");
        };
        let pick = |w: Want| {
            select(&children, &w)
                .map(|v| v.iter().map(|c| c.digest.to_string()).collect::<Vec<_>>())
        };
        let p = |s: &str| Want::One(Platform::parse(s).expect("platform"));
        assert_eq!(pick(p("linux/amd64")), Ok(vec![d('a')]));
        assert_eq!(pick(p("linux/aarch64")), Ok(vec![d('b')]));
        assert_eq!(pick(p("linux/arm64/v8")), Ok(vec![d('b')]));
        assert_eq!(pick(Want::All), Ok(vec![d('a'), d('b')]));
        let e = pick(p("linux/s390x")).expect_err("none");
        assert!(e.contains("linux/amd64, linux/arm64/v8"), "{e}");
        assert!(Platform::parse("linux").is_err());
    }

    #[test]
    fn the_host_is_named_in_oci_words() {
        let h = host();
        assert_eq!(h.os, "linux");
        assert!(!["x86_64", "aarch64"].contains(&h.architecture.as_str()));
    }
}
