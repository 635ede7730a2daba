//! Commit signature verification (design section 12, `source.git.verify`): the trusted
//! keys ([`TrustedKeys`], read from an ssh-keygen ALLOWED SIGNERS file and an armored
//! OpenPGP key ring), and [`verify_signature`], which checks one commit's `gpgsig`
//! signature over its signed payload (both as git2's `extract_signature` returns them).
//!
//! Pure Rust: SSHSIG through `ssh-key` (ed25519 and RSA keys), OpenPGP through `pgp`
//! (rpgp; primary keys and signing subkeys). Validity windows are checked against the
//! time Phoenix evaluates the commit, never the commit's own date, which the signer
//! chooses: a key whose `valid-before` has passed cannot bring in new commits however
//! they are dated.
//!
//! The ALLOWED SIGNERS format (ssh-keygen(1)): one key a line,
//! `principals [options] keytype base64 [comment]`, `#` comments, options
//! `namespaces="git,..."`, `valid-after="YYYYMMDD[HHMM[SS]][Z]"`, `valid-before=...`.
//! Times are read as UTC (ssh-keygen reads them as local time unless they end in `Z`).
//! `cert-authority` lines are refused with a clear error: Phoenix does not verify SSH
//! certificates.

use std::fmt;
use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::types::KeyDetails;
use phoenix_core::config::{GitVerifyConfig, VerifyMode};
use serde::Serialize;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::error::SourceError;

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const GIT_NAMESPACE: &str = "git";

/// Which scheme made a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureKind {
    /// An SSHSIG signature (`gpg.format ssh`).
    Ssh,
    /// An OpenPGP signature (`gpg.format openpgp`).
    Openpgp,
}

impl SignatureKind {
    /// The name used in the status API.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureKind::Ssh => "ssh",
            SignatureKind::Openpgp => "openpgp",
        }
    }
}

/// A verified signature: who signed the commit, with which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// SSH or OpenPGP.
    pub kind: SignatureKind,
    /// The key's fingerprint: `SHA256:...` for SSH, the primary key's 40-hex
    /// fingerprint for OpenPGP.
    pub key: String,
    /// The allowed-signers principals, or the OpenPGP key's primary user id.
    pub signer: String,
}

/// Why a commit's signature is not accepted. Each variant's message names the case:
/// unsigned, unknown key, bad signature, expired (or not yet valid) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureFailure {
    /// The commit has no `gpgsig` header.
    Unsigned,
    /// Signed by a key that is not trusted (or trusted only for other namespaces).
    UnknownKey {
        /// SSH fingerprint or OpenPGP issuer fingerprint / key id.
        key: String,
        /// What else is worth knowing (e.g. listed only for other namespaces).
        note: Option<String>,
    },
    /// The signature is malformed or does not match the commit's content.
    BadSignature {
        /// The verifier's reason.
        reason: String,
    },
    /// The key is trusted but outside its validity window (or revoked).
    ExpiredKey {
        /// The key's fingerprint.
        key: String,
        /// Whose key it is.
        signer: String,
        /// `valid before 2025-01-01T00:00:00Z`, `not valid before ...`, `revoked`.
        window: String,
    },
}

impl fmt::Display for SignatureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureFailure::Unsigned => f.write_str("unsigned"),
            SignatureFailure::UnknownKey { key, note } => {
                write!(f, "signed by unknown key {key}")?;
                match note {
                    Some(note) => write!(f, " ({note})"),
                    None => Ok(()),
                }
            }
            SignatureFailure::BadSignature { reason } => write!(f, "bad signature ({reason})"),
            SignatureFailure::ExpiredKey {
                key,
                signer,
                window,
            } => write!(f, "signed by expired key {key} of {signer} ({window})"),
        }
    }
}

/// One line of an ALLOWED SIGNERS file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigner {
    /// The principals as written (a comma-separated pattern list).
    pub principals: String,
    /// `namespaces="..."`, split on commas; `None` allows every namespace.
    pub namespaces: Option<Vec<String>>,
    /// `valid-after`, seconds since the Unix epoch (UTC).
    pub valid_after: Option<i64>,
    /// `valid-before`, seconds since the Unix epoch (UTC).
    pub valid_before: Option<i64>,
    /// The public key (an `ssh-key` type, so not public API).
    pub(crate) key: KeyData,
    /// 1-based line in the file.
    pub line: usize,
}

impl AllowedSigner {
    fn allows_git(&self) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|list| list.iter().any(|ns| glob_match(ns, GIT_NAMESPACE)))
    }
}

/// A problem in a trust file, with its 1-based line when one is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustFileProblem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Parse an ALLOWED SIGNERS file. Blank lines and `#` comments are skipped.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<AllowedSigner>, TrustFileProblem> {
    let mut signers = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let problem = |message: String| TrustFileProblem {
            line: Some(line),
            message,
        };
        signers.push(parse_signer_line(trimmed, line).map_err(problem)?);
    }
    Ok(signers)
}

fn parse_signer_line(line_text: &str, line: usize) -> Result<AllowedSigner, String> {
    let (principals, rest) = next_token(line_text);
    let principals = principals.trim_matches('"').to_string();
    if principals.is_empty() {
        return Err("missing principals".into());
    }
    let rest = rest.trim_start();
    let (options, key_text) = if looks_like_key_type(rest) {
        ("", rest)
    } else {
        let (options, rest) = next_token(rest);
        (options, rest.trim_start())
    };
    let mut signer = AllowedSigner {
        principals,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key: PublicKey::from_openssh(key_text)
            .map_err(|err| format!("cannot read the public key: {err}"))?
            .key_data()
            .clone(),
        line,
    };
    for option in split_options(options) {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value.trim_matches('"'))),
            None => (option, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("cert-authority", _) => {
                return Err(
                    "`cert-authority` lines are not supported: Phoenix verifies plain keys only; list each signer's public key instead".into(),
                );
            }
            ("namespaces", Some(value)) => {
                signer.namespaces = Some(value.split(',').map(str::to_string).collect());
            }
            ("valid-after", Some(value)) => signer.valid_after = Some(parse_ssh_time(value)?),
            ("valid-before", Some(value)) => signer.valid_before = Some(parse_ssh_time(value)?),
            (other, _) => return Err(format!("unknown or incomplete option `{other}`")),
        }
    }
    Ok(signer)
}

fn looks_like_key_type(text: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-", "rsa-"]
        .iter()
        .any(|prefix| text.starts_with(prefix))
}

/// The next whitespace-separated token, where double quotes may hold spaces.
fn next_token(text: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&text[..i], &text[i..]),
            _ => {}
        }
    }
    (text, "")
}

/// Options split on commas outside double quotes.
fn split_options(options: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in options.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < options.len() {
        parts.push(&options[start..]);
    }
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// `YYYYMMDD[HHMM[SS]][Z]` as seconds since the Unix epoch, read as UTC.
pub fn parse_ssh_time(text: &str) -> Result<i64, String> {
    let digits = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    let bad = || format!("`{text}` is not a time of the form YYYYMMDD[HHMM[SS]][Z]");
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> i64 {
        digits.get(range).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    let (hour, minute, second) = (num(8..10), num(10..12), num(12..14));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad());
    }
    if second > 60 {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn format_time(secs: i64) -> String {
    u64::try_from(secs)
        .map(|s| {
            phoenix_core::time::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        })
        .unwrap_or_else(|_| format!("{secs}s after the epoch"))
}

/// Match `text` against an ssh-style pattern: `*` any run, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    phoenix_core::policy::glob_match(pattern, text)
}

/// The keys trusted to sign commits, read from the files `source.git.verify` names.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    /// How many commits each new revision must have verified.
    pub mode: VerifyMode,
    /// From `allowed_signers`.
    pub ssh: Vec<AllowedSigner>,
    /// From `openpgp_keys` (rpgp types, so not public API).
    pub(crate) openpgp: Vec<SignedPublicKey>,
}

impl TrustedKeys {
    /// Read the files `config` names. Read again for every new commit, so a rotated key
    /// file is in force without a restart.
    pub fn load(config: &GitVerifyConfig) -> Result<TrustedKeys, SourceError> {
        let mut keys = TrustedKeys {
            mode: config.mode,
            ..TrustedKeys::default()
        };
        if let Some(path) = &config.allowed_signers {
            let text = read_text(path)?;
            keys.ssh = parse_allowed_signers(&text).map_err(|p| trust_error(path, p))?;
        }
        if let Some(path) = &config.openpgp_keys {
            let text = read_text(path)?;
            keys.openpgp = parse_openpgp_keys(&text).map_err(|p| trust_error(path, p))?;
        }
        Ok(keys)
    }
}

/// A digest of the trust files' contents (a file that cannot be read counts as its
/// error kind), to notice a key rotation: a commit rejected for its signature is
/// evaluated again once the trust files change.
pub fn trust_stamp(config: &GitVerifyConfig) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for path in [&config.allowed_signers, &config.openpgp_keys] {
        match path.as_deref().map(std::fs::read) {
            None => digest.update(b"none"),
            Some(Ok(bytes)) => {
                digest.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
                digest.update(&bytes);
            }
            Some(Err(err)) => digest.update(format!("error {:?}", err.kind()).as_bytes()),
        }
    }
    digest.finalize().into()
}

fn read_text(path: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn trust_error(path: &Path, problem: TrustFileProblem) -> SourceError {
    SourceError::TrustFile {
        path: PathBuf::from(path),
        line: problem.line,
        message: problem.message,
    }
}

/// Parse armored OpenPGP public keys (one or more blocks). Each key's self-signatures
/// and subkey bindings must verify.
pub(crate) fn parse_openpgp_keys(text: &str) -> Result<Vec<SignedPublicKey>, TrustFileProblem> {
    const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
    let mut parsed = Vec::new();
    // One armor block at a time: `gpg --export a b > f` writes one block, while
    // appending one export per person (`cat a.asc b.asc`) writes several.
    let starts: Vec<usize> = text.match_indices(BEGIN).map(|(i, _)| i).collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        let block = &text[start..end];
        let line = text[..start].lines().count() + 1;
        let problem = |message: String| TrustFileProblem {
            line: Some(line),
            message,
        };
        let (keys, _headers) = SignedPublicKey::from_string_many(block)
            .map_err(|err| problem(format!("not an armored OpenPGP public key: {err}")))?;
        for key in keys {
            let key = key.map_err(|err| problem(format!("cannot read an OpenPGP key: {err}")))?;
            key.verify_bindings().map_err(|err| {
                problem(format!(
                    "key {:X}: its self-signatures do not verify: {err}",
                    key.fingerprint()
                ))
            })?;
            parsed.push(key);
        }
    }
    if parsed.is_empty() {
        return Err(TrustFileProblem {
            line: None,
            message: format!("no OpenPGP public key in the file (expected `{BEGIN}` blocks)"),
        });
    }
    Ok(parsed)
}

/// Verify one commit's signature (`gpgsig` text) over its `payload` with the trusted
/// keys, at `now` (seconds since the Unix epoch).
pub fn verify_signature(
    signature: &[u8],
    payload: &[u8],
    keys: &TrustedKeys,
    now: i64,
) -> Result<Signature, SignatureFailure> {
    let text = String::from_utf8_lossy(signature);
    let trimmed = text.trim_start();
    if trimmed.starts_with("-----BEGIN SSH SIGNATURE-----") {
        verify_ssh(trimmed, payload, &keys.ssh, now)
    } else if trimmed.starts_with("-----BEGIN PGP SIGNATURE-----") {
        verify_openpgp(trimmed, payload, &keys.openpgp, now)
    } else {
        Err(SignatureFailure::BadSignature {
            reason: "neither an SSH nor an OpenPGP signature (X.509 signatures are not supported)"
                .into(),
        })
    }
}

fn verify_ssh(
    text: &str,
    payload: &[u8],
    signers: &[AllowedSigner],
    now: i64,
) -> Result<Signature, SignatureFailure> {
    let sig = SshSig::from_pem(text).map_err(|err| SignatureFailure::BadSignature {
        reason: format!("malformed SSH signature: {err}"),
    })?;
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    if sig.namespace() != GIT_NAMESPACE {
        return Err(SignatureFailure::BadSignature {
            reason: format!("made for namespace `{}`, not `git`", sig.namespace()),
        });
    }
    let listed: Vec<&AllowedSigner> = signers
        .iter()
        .filter(|s| &s.key == sig.public_key())
        .collect();
    let for_git: Vec<&AllowedSigner> = listed.iter().copied().filter(|s| s.allows_git()).collect();
    if for_git.is_empty() {
        return Err(SignatureFailure::UnknownKey {
            key: fingerprint,
            note: (!listed.is_empty())
                .then(|| "listed in allowed_signers, but not for namespace `git`".to_string()),
        });
    }
    PublicKey::from(sig.public_key().clone())
        .verify(GIT_NAMESPACE, payload, &sig)
        .map_err(|err| SignatureFailure::BadSignature {
            reason: format!("does not match the commit: {err}"),
        })?;
    match for_git.iter().find(|s| ssh_window(s, now).is_none()) {
        Some(signer) => Ok(Signature {
            kind: SignatureKind::Ssh,
            key: fingerprint,
            signer: signer.principals.clone(),
        }),
        None => Err(SignatureFailure::ExpiredKey {
            key: fingerprint,
            signer: for_git[0].principals.clone(),
            window: ssh_window(for_git[0], now).unwrap_or_default(),
        }),
    }
}

/// Why `signer` is not valid at `now`, or `None` when it is.
fn ssh_window(signer: &AllowedSigner, now: i64) -> Option<String> {
    if let Some(before) = signer.valid_before
        && now >= before
    {
        return Some(format!("valid before {}", format_time(before)));
    }
    if let Some(after) = signer.valid_after
        && now < after
    {
        return Some(format!("not valid before {}", format_time(after)));
    }
    None
}

fn verify_openpgp(
    text: &str,
    payload: &[u8],
    keys: &[SignedPublicKey],
    now: i64,
) -> Result<Signature, SignatureFailure> {
    let (sig, _) =
        DetachedSignature::from_string(text).map_err(|err| SignatureFailure::BadSignature {
            reason: format!("malformed OpenPGP signature: {err}"),
        })?;
    let packet = &sig.signature;
    let issuer_fps = packet.issuer_fingerprint();
    let issuer_ids = packet.issuer_key_id();
    let issued_by = |details: &dyn KeyDetails| {
        issuer_fps.iter().any(|fp| **fp == details.fingerprint())
            || issuer_ids.iter().any(|id| **id == details.legacy_key_id())
    };
    for key in keys {
        let found = Signature {
            kind: SignatureKind::Openpgp,
            key: format!("{:X}", key.fingerprint()),
            signer: primary_user_id(key),
        };
        if issued_by(key) {
            return check_openpgp(&sig, key, payload, openpgp_window(key, None, now), found);
        }
        if let Some(subkey) = key.public_subkeys.iter().find(|sub| issued_by(*sub)) {
            let window = openpgp_window(key, Some(subkey), now);
            return check_openpgp(&sig, subkey, payload, window, found);
        }
    }
    let key = issuer_fps
        .first()
        .map(|fp| format!("{fp:X}"))
        .or_else(|| issuer_ids.first().map(|id| hex::encode_upper(id.as_ref())))
        .unwrap_or_else(|| "(no issuer in the signature)".into());
    Err(SignatureFailure::UnknownKey { key, note: None })
}

fn check_openpgp(
    sig: &DetachedSignature,
    key: &impl pgp::types::VerifyingKey,
    payload: &[u8],
    window: Option<String>,
    signature: Signature,
) -> Result<Signature, SignatureFailure> {
    sig.verify(key, payload)
        .map_err(|err| SignatureFailure::BadSignature {
            reason: format!("does not match the commit: {err}"),
        })?;
    match window {
        None => Ok(signature),
        Some(window) => Err(SignatureFailure::ExpiredKey {
            key: signature.key,
            signer: signature.signer,
            window,
        }),
    }
}

fn primary_user_id(key: &SignedPublicKey) -> String {
    let users = &key.details.users;
    users
        .iter()
        .find(|u| u.is_primary())
        .or_else(|| users.first())
        .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
        .unwrap_or_else(|| format!("{:X}", key.fingerprint()))
}

/// Why the key (and the signing subkey, if one signed) is not valid at `now`.
fn openpgp_window(
    key: &SignedPublicKey,
    subkey: Option<&SignedPublicSubKey>,
    now: i64,
) -> Option<String> {
    if !key.details.revocation_signatures.is_empty() {
        return Some("the key is revoked".into());
    }
    let self_sigs = key.details.users.iter().flat_map(|u| u.signatures.iter());
    let primary_expiry = expiry(key.created_at().as_secs(), latest(self_sigs));
    if let Some(at) = primary_expiry
        && now >= at
    {
        return Some(format!("expired at {}", format_time(at)));
    }
    let subkey = subkey?;
    let sub_expiry = expiry(
        subkey.key.created_at().as_secs(),
        latest(subkey.signatures.iter()),
    );
    match sub_expiry {
        Some(at) if now >= at => Some(format!("signing subkey expired at {}", format_time(at))),
        _ => None,
    }
}

/// The newest signature of a list (by creation time).
fn latest<'a>(
    sigs: impl Iterator<Item = &'a pgp::packet::Signature>,
) -> Option<&'a pgp::packet::Signature> {
    sigs.max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

/// A key's expiry instant from its creation and the key-expiration subpacket of its
/// newest self-signature; `None` when it never expires.
fn expiry(created: u32, sig: Option<&pgp::packet::Signature>) -> Option<i64> {
    let lifetime = sig?.key_expiration_time()?.as_secs();
    (lifetime != 0).then(|| i64::from(created) + i64::from(lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAKPTEd2dtIwHALQHtbHtwzzyTBtvg2YTBIhv0Ajod2T a@b";

    #[test]
    fn allowed_signers_lines() {
        let text = format!(
            "# team\n\nalice@example.com {ED}\n\"bob@x,carol@x\" namespaces=\"git,file\",valid-after=\"20250101\",valid-before=\"20260101Z\" {ED}\n"
        );
        let signers = parse_allowed_signers(&text).expect("valid file");
        assert_eq!(signers.len(), 2);
        assert_eq!(signers[0].principals, "alice@example.com");
        assert_eq!(signers[0].line, 3);
        assert!(signers[0].allows_git());
        assert_eq!(signers[1].principals, "bob@x,carol@x");
        assert_eq!(
            signers[1].namespaces.as_deref(),
            Some(&["git".to_string(), "file".to_string()][..])
        );
        assert_eq!(signers[1].valid_after, Some(1_735_689_600));
        assert_eq!(signers[1].valid_before, Some(1_767_225_600));
    }

    #[test]
    fn allowed_signers_errors_name_the_line() {
        let err = parse_allowed_signers(&format!("a@b cert-authority {ED}\n"))
            .expect_err("cert-authority refused");
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("cert-authority"), "{}", err.message);
        let err = parse_allowed_signers("\na@b ssh-ed25519 notbase64\n").expect_err("bad key");
        assert_eq!(err.line, Some(2));
        let err = parse_allowed_signers(&format!("a@b valid-before=\"2025\" {ED}\n"))
            .expect_err("bad time");
        assert!(err.message.contains("YYYYMMDD"), "{}", err.message);
        let err =
            parse_allowed_signers(&format!("a@b frobnicate {ED}\n")).expect_err("unknown option");
        assert!(err.message.contains("frobnicate"), "{}", err.message);
    }

    #[test]
    fn namespaces_exclude_git() {
        let text = format!("a@b namespaces=\"file\" {ED}\n");
        let signers = parse_allowed_signers(&text).expect("valid");
        assert!(!signers[0].allows_git());
    }

    #[test]
    fn ssh_times() {
        assert_eq!(parse_ssh_time("19700101"), Ok(0));
        assert_eq!(parse_ssh_time("197001020000"), Ok(86_400));
        assert_eq!(parse_ssh_time("20240229235959Z"), Ok(1_709_251_199));
        assert!(parse_ssh_time("20241301").is_err());
        assert!(parse_ssh_time("2024010").is_err());
    }

    #[test]
    fn unknown_formats_are_bad_signatures() {
        let keys = TrustedKeys::default();
        let failure = verify_signature(b"-----BEGIN SIGNED MESSAGE-----", b"x", &keys, 0)
            .expect_err("x509 refused");
        assert!(matches!(failure, SignatureFailure::BadSignature { .. }));
        let failure = verify_signature(
            b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
            b"x",
            &keys,
            0,
        )
        .expect_err("malformed");
        assert!(
            failure.to_string().starts_with("bad signature"),
            "{failure}"
        );
    }
}
