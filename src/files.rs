//! Private files: everything the workstation writes that may hold card data, statuses or keys
//! (the store, the records log, key files, packed orders, simulator state) is created readable
//! by its owner only (0600) in directories only its owner may enter (0700), and never through a
//! symbolic link planted in its place.
//!
//! - [`private_dir`]: creates missing directories 0700 (and narrows the last one when it is ours,
//!   unless it is a shared sticky directory such as `/tmp`: a store at `/tmp/x.sqlite3` run as
//!   root must not make `/tmp` 0700 for every other user; the file itself is still 0600).
//! - [`create_private`]: a new file, `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600 (temporary files).
//! - [`open_private`]: create or truncate / append, `O_NOFOLLOW`, mode 0600 (narrowed when the
//!   file existed with a wider mode).
//! - [`replace_private`]: write a temporary file with [`create_private`], then rename it over the
//!   target (atomic; a pre-existing `*.tmp` symlink is refused, not followed).

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;
/// Mode of private directories.
pub const DIR_MODE: u32 = 0o700;

const O_NOFOLLOW: i32 = nix::libc::O_NOFOLLOW;

/// Creates `dir` and its missing parents with mode 0700; an existing `dir` owned by this user is
/// narrowed to 0700, except a sticky directory (mode 1000: shared, such as `/tmp`), left as is.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.uid() == nix::unistd::getuid().as_raw() && meta.mode() & 0o077 != 0 && !sticky {
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Creates the parent directory of `path` privately ([`private_dir`]).
pub fn private_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => private_dir(dir),
        None => Ok(()),
    }
}

/// Creates a new file 0600; fails when anything (file or link) already has that name.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW)
        .open(path)
}

/// How [`open_private`] opens an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Keep the content and write at the end.
    Append,
    /// Empty it.
    Truncate,
}

/// Opens `path` for writing (creating it 0600), never through a symbolic link; an existing file
/// with a wider mode is narrowed to 0600.
pub fn open_private(path: &Path, existing: Existing) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW);
    match existing {
        Existing::Append => options.append(true),
        Existing::Truncate => options.write(true).truncate(true),
    };
    let file = options.open(path)?;
    if file.metadata()?.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// Makes sure `path` exists as a private regular file (created 0600 when missing, narrowed when
/// wider), e.g. before a library creates and opens it.
pub fn ensure_private(path: &Path) -> std::io::Result<()> {
    open_private(path, Existing::Append).map(drop)
}

/// Replaces `path` with `bytes` atomically: a new temporary file beside it (refused when the name
/// is taken, e.g. by a planted symlink), synced, then renamed over `path`.
pub fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_name(path);
    let result = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Only remove what we created: a name we could not create is left alone.
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_file()) {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    result
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("persodesk-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn private_files_and_dirs_are_owner_only() {
        let d = scratch("modes");
        let f = d.join("a/b/records.jsonl");
        private_parent(&f).expect("dir");
        assert_eq!(
            std::fs::metadata(d.join("a/b")).expect("m").mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(d.join("a")).expect("m").mode() & 0o777,
            0o700
        );
        open_private(&f, Existing::Append).expect("open");
        assert_eq!(std::fs::metadata(&f).expect("m").mode() & 0o777, 0o600);
        // An existing file 0644 is narrowed.
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).expect("chmod");
        open_private(&f, Existing::Append).expect("open");
        assert_eq!(std::fs::metadata(&f).expect("m").mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_existing_dir_is_narrowed_but_a_shared_sticky_one_is_left_alone() {
        let d = scratch("sticky");
        let shared = d.join("shared");
        let plain = d.join("plain");
        for (dir, mode) in [(&shared, 0o1777), (&plain, 0o755)] {
            std::fs::create_dir_all(dir).expect("dir");
            std::fs::set_permissions(dir, Permissions::from_mode(mode)).expect("chmod");
        }
        private_parent(&shared.join("store.sqlite3")).expect("shared parent");
        private_parent(&plain.join("store.sqlite3")).expect("plain parent");
        let mode = |p: &Path| std::fs::metadata(p).expect("m").mode() & 0o7777;
        assert_eq!(mode(&shared), 0o1777, "a sticky shared dir keeps its mode");
        assert_eq!(mode(&plain), 0o700, "an ordinary dir of ours is narrowed");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn planted_symlinks_are_not_followed() {
        let d = scratch("links");
        private_dir(&d).expect("dir");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        let target = d.join("state.json");
        std::os::unix::fs::symlink(&victim, tmp_name(&target)).expect("link");
        assert!(replace_private(&target, b"new").is_err());
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
        std::fs::remove_file(tmp_name(&target)).expect("unlink");
        replace_private(&target, b"new").expect("replace");
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
        assert_eq!(std::fs::metadata(&target).expect("m").mode() & 0o777, 0o600);
        let link = d.join("link");
        std::os::unix::fs::symlink(&victim, &link).expect("link");
        assert!(open_private(&link, Existing::Append).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
