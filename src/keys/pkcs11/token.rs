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
    /// RSA modulus (public), RSA objects only.
    pub modulus: Vec<u8>,
}

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

    /// Whether the token offers `mechanism` (asked one by one: `cryptoki`'s mechanism list
    /// drops the types it has no name for, `CKM_DES_ECB` and `CKM_DES3_CBC` among them).
    pub fn has(&self, mechanism: MechanismType) -> bool {
        self.ctx.get_mechanism_info(self.slot, mechanism).is_ok()
    }
}

fn kind_of(key_type: KeyType, len: usize) -> Option<ObjectKind> {
    Some(match key_type {
        KeyType::DES => ObjectKind::Des,
        KeyType::DES2 => ObjectKind::Des2,
        KeyType::DES3 => ObjectKind::Des3,
        KeyType::AES if matches!(len, 16 | 24 | 32) => ObjectKind::Aes(len),
        KeyType::RSA => ObjectKind::Rsa,
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
            let mut wanted = vec![
                AttributeType::Label,
                AttributeType::KeyType,
                AttributeType::Sensitive,
                AttributeType::Extractable,
            ];
            wanted.push(if class == ObjectClass::PRIVATE_KEY {
                AttributeType::Modulus
            } else {
                AttributeType::ValueLen
            });
            let attrs = s
                .get_attributes(h, &wanted)
                .map_err(|e| fail("token", format!("C_GetAttributeValue: {}", describe(&e))))?;
            let (mut label, mut key_type, mut len) = (None, None, 0usize);
            let mut obj = TokenObject {
                handle: h,
                kind: ObjectKind::Des,
                sensitive: false,
                extractable: true,
                modulus: Vec::new(),
            };
            for a in attrs {
                match a {
                    Attribute::Label(l) => label = String::from_utf8(l).ok(),
                    Attribute::KeyType(k) => key_type = Some(k),
                    Attribute::Sensitive(b) => obj.sensitive = b,
                    Attribute::Extractable(b) => obj.extractable = b,
                    Attribute::ValueLen(n) => len = usize::try_from(u64::from(n)).unwrap_or(0),
                    Attribute::Modulus(m) => obj.modulus = m,
                    _ => {}
                }
            }
            let (Some(label), Some(kind)) = (label, key_type.and_then(|k| kind_of(k, len))) else {
                continue;
            };
            obj.kind = kind;
            out.insert(label, obj);
        }
    }
    Ok(out)
}
