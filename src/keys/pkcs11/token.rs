//! The token: the module loaded once per process, one logged-in session, and the index of the
//! key objects by `CKA_LABEL`. Every operation with a long-lived key is a call into the token;
//! `CKA_VALUE` is never read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// What kind of key an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// Single DES (the halves of a CVK).
    Des,
    /// 2-key TDES.
    Des2,
    /// 3-key TDES.
    Des3,
    /// AES of the given byte length.
    Aes(usize),
    /// RSA private key.
    Rsa,
    /// A generic secret of the given byte length: the `audit` key (`CKM_SHA256_HMAC`).
    Generic(usize),
    /// EC private key on P-256 (a `jwe/<kid>` key, `CKM_ECDH1_DERIVE`).
    EcP256,
}

impl ObjectKind {
    /// The name `keys list` prints.
    pub fn name(self) -> String {
        match self {
            Self::Des => "des".into(),
            Self::Des2 => "tdes-2key".into(),
            Self::Des3 => "tdes-3key".into(),
            Self::Aes(n) => format!("aes-{}", n * 8),
            Self::Rsa => "rsa".into(),
            Self::Generic(n) => format!("hmac-{}", n * 8),
            Self::EcP256 => "ec-p256".into(),
        }
    }
}

/// A key object on the token.
#[derive(Debug, Clone)]
pub struct TokenObject {
    /// The object handle in this session.
    pub handle: ObjectHandle,
    /// Its kind.
    pub kind: ObjectKind,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_DERIVE` (the IMKs: ICC master keys are derived in the token; without it, only on a
    /// test token, with `C_Encrypt` through host memory).
    pub derive: bool,
    /// RSA modulus (public), RSA objects only.
    pub modulus: Vec<u8>,
    /// The public point `04 || X || Y` of an EC private key, from the public key object with
    /// the same label (empty when there is none).
    pub ec_point: Vec<u8>,
}

/// DER of the OID of P-256 (secp256r1, 1.2.840.10045.3.1.7), as `CKA_EC_PARAMS` holds it.
pub const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// Why the token could not be used. Never carries the PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// What failed: `module`, `token`, `pin`, an object label.
    pub location: String,
    /// The rule.
    pub rule: String,
}

fn fail(location: impl Into<String>, rule: impl Into<String>) -> TokenError {
    TokenError {
        location: location.into(),
        rule: rule.into(),
    }
}

/// A short description of a PKCS#11 failure (the return value's name).
pub fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{f} returned {rv}"),
        CkError::LibraryLoading(_) => "the module cannot be loaded".into(),
        other => other.to_string(),
    }
}

static CONTEXTS: OnceLock<Mutex<Vec<(PathBuf, Pkcs11)>>> = OnceLock::new();

/// The module at `path`, loaded and initialised once per process (a module is initialised once
/// per process; finalising it would close every other session).
fn context(path: &Path) -> Result<Pkcs11, TokenError> {
    let cache = CONTEXTS.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache
        .lock()
        .map_err(|_| fail("module", "the module cache is poisoned"))?;
    if let Some((_, ctx)) = cache.iter().find(|(p, _)| p == path) {
        return Ok(ctx.clone());
    }
    if !path.exists() {
        return Err(fail(
            "module",
            format!(
                "{} does not exist (is the HSM library installed?)",
                path.display()
            ),
        ));
    }
    let ctx = Pkcs11::new(path).map_err(|e| {
        fail(
            "module",
            format!("{} cannot be loaded: {}", path.display(), describe(&e)),
        )
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail("module", format!("C_Initialize: {}", describe(&e)))),
    }
    cache.push((path.to_path_buf(), ctx.clone()));
    Ok(ctx)
}

/// An open, logged-in token.
pub struct Token {
    session: Mutex<Session>,
    /// The token label.
    pub label: String,
    ctx: Pkcs11,
    slot: Slot,
    objects: BTreeMap<String, TokenObject>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .field("objects", &self.objects.len())
            .finish()
    }
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, TokenError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| fail("token", describe(&e)))?;
    let mut seen = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| fail("token", describe(&e)))?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
        seen.push(info.label().trim_end().to_string());
    }
    Err(fail(
        "token",
        format!(
            "no token labelled {label} (tokens present: {})",
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        ),
    ))
}

impl Token {
    /// Loads `module`, finds the token labelled `label`, opens a read-write session and logs in
    /// with `pin`; indexes the key objects. `rw` opens a read-write session (key import).
    pub fn open(module: &Path, label: &str, pin: &str, rw: bool) -> Result<Self, TokenError> {
        let ctx = context(module)?;
        let slot = find_slot(&ctx, label)?;
        let session = if rw {
            ctx.open_rw_session(slot)
        } else {
            ctx.open_ro_session(slot)
        }
        .map_err(|e| fail("token", format!("{label}: {}", describe(&e))))?;
        let pin = AuthPin::new(pin.to_string().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(fail("pin", format!("wrong PIN for token {label}")));
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(fail(
                    "pin",
                    format!("the user PIN of token {label} is locked"),
                ));
            }
            Err(e) => return Err(fail("pin", format!("login to {label}: {}", describe(&e)))),
        }
        let mut token = Self {
            session: Mutex::new(session),
            label: label.to_string(),
            ctx,
            slot,
            objects: BTreeMap::new(),
        };
        token.reindex()?;
        Ok(token)
    }

    /// Re-reads the key objects (after an import).
    pub fn reindex(&mut self) -> Result<(), TokenError> {
        let objects = {
            let s = self.session()?;
            index_objects(&s)?
        };
        self.objects = objects;
        Ok(())
    }

    /// The session, for one operation.
    pub fn session(&self) -> Result<MutexGuard<'_, Session>, TokenError> {
        self.session
            .lock()
            .map_err(|_| fail("token", "the session lock is poisoned"))
    }

    /// The object labelled `label`.
    pub fn object(&self, label: &str) -> Option<&TokenObject> {
        self.objects.get(label)
    }

    /// Every key object by label.
    pub fn objects(&self) -> &BTreeMap<String, TokenObject> {
        &self.objects
    }

    /// A second session on the token (logged in: PKCS#11 login is per application), for a
    /// component that outlives a borrow of the store (the audit sealer).
    pub fn extra_session(&self) -> Result<Session, TokenError> {
        self.ctx
            .open_ro_session(self.slot)
            .map_err(|e| fail("token", format!("{}: {}", self.label, describe(&e))))
    }

    /// Whether the token offers `mechanism` (asked one by one: `cryptoki`'s mechanism list
    /// drops the types it has no name for, `CKM_DES_ECB` and `CKM_DES3_CBC` among them).
    pub fn has(&self, mechanism: MechanismType) -> bool {
        self.ctx.get_mechanism_info(self.slot, mechanism).is_ok()
    }

    /// Whether the token offers `mechanism` for `C_WrapKey` (`CKF_WRAP`).
    pub fn can_wrap(&self, mechanism: MechanismType) -> bool {
        self.ctx
            .get_mechanism_info(self.slot, mechanism)
            .is_ok_and(|i| i.wrap())
    }
}

fn kind_of(key_type: KeyType, len: usize) -> Option<ObjectKind> {
    Some(match key_type {
        KeyType::DES => ObjectKind::Des,
        KeyType::DES2 => ObjectKind::Des2,
        KeyType::DES3 => ObjectKind::Des3,
        KeyType::AES if matches!(len, 16 | 24 | 32) => ObjectKind::Aes(len),
        KeyType::RSA => ObjectKind::Rsa,
        KeyType::GENERIC_SECRET if (16..=64).contains(&len) => ObjectKind::Generic(len),
        _ => return None,
    })
}

fn index_objects(s: &Session) -> Result<BTreeMap<String, TokenObject>, TokenError> {
    let mut out = BTreeMap::new();
    for class in [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY] {
        let handles = s
            .find_objects(&[Attribute::Class(class), Attribute::Token(true)])
            .map_err(|e| fail("token", format!("C_FindObjects: {}", describe(&e))))?;
        for h in handles {
            if let Some((label, obj)) = index_object(s, class, h)? {
                out.insert(label, obj);
            }
        }
    }
    Ok(out)
}

fn attributes(
    s: &Session,
    h: ObjectHandle,
    wanted: &[AttributeType],
) -> Result<Vec<Attribute>, TokenError> {
    s.get_attributes(h, wanted)
        .map_err(|e| fail("token", format!("C_GetAttributeValue: {}", describe(&e))))
}

/// One key object: its label and what the store needs of it (`None`: not a key kind it uses).
fn index_object(
    s: &Session,
    class: ObjectClass,
    h: ObjectHandle,
) -> Result<Option<(String, TokenObject)>, TokenError> {
    let wanted = [
        AttributeType::Label,
        AttributeType::KeyType,
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::Derive,
    ];
    let (mut label, mut key_type) = (None, None);
    let mut obj = TokenObject {
        handle: h,
        kind: ObjectKind::Des,
        sensitive: false,
        extractable: true,
        derive: false,
        modulus: Vec::new(),
        ec_point: Vec::new(),
    };
    for a in attributes(s, h, &wanted)? {
        match a {
            Attribute::Label(l) => label = String::from_utf8(l).ok(),
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::Sensitive(b) => obj.sensitive = b,
            Attribute::Extractable(b) => obj.extractable = b,
            Attribute::Derive(b) => obj.derive = b,
            _ => {}
        }
    }
    let (Some(label), Some(key_type)) = (label, key_type) else {
        return Ok(None);
    };
    let extra = match (class == ObjectClass::PRIVATE_KEY, key_type) {
        (true, KeyType::RSA) => AttributeType::Modulus,
        (true, KeyType::EC) => AttributeType::EcParams,
        (true, _) => return Ok(None),
        (false, _) => AttributeType::ValueLen,
    };
    let mut len = 0usize;
    let mut p256 = false;
    for a in attributes(s, h, &[extra])? {
        match a {
            Attribute::ValueLen(n) => len = usize::try_from(u64::from(n)).unwrap_or(0),
            Attribute::Modulus(m) => obj.modulus = m,
            Attribute::EcParams(p) => p256 = p == P256_PARAMS,
            _ => {}
        }
    }
    obj.kind = if key_type == KeyType::EC {
        if !p256 {
            return Ok(None);
        }
        obj.ec_point = public_point(s, &label)?;
        ObjectKind::EcP256
    } else {
        match kind_of(key_type, len) {
            Some(k) => k,
            None => return Ok(None),
        }
    };
    Ok(Some((label, obj)))
}

/// The public point of the EC public key object labelled `label`: `CKA_EC_POINT` is the DER
/// OCTET STRING of `04 || X || Y` (PKCS#11 2.40), or the raw point on some tokens.
fn public_point(s: &Session, label: &str) -> Result<Vec<u8>, TokenError> {
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| fail("token", format!("C_FindObjects: {}", describe(&e))))?;
    let Some(h) = found.first() else {
        return Ok(Vec::new());
    };
    for a in attributes(s, *h, &[AttributeType::EcPoint])? {
        if let Attribute::EcPoint(p) = a {
            return Ok(match p.as_slice() {
                [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
                raw => raw.to_vec(),
            });
        }
    }
    Ok(Vec::new())
}
