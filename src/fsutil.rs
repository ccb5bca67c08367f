//! Files are precious: telling whether two names reach one file, and writing a file so that it
//! appears whole or not at all.
//!
//! A path string says little about a file: a hard link, `./x`, a symbolic link or a shell
//! redirection all reach the same one. [`FileId`] compares what the operating system compares:
//! device and inode. [`AtomicFile`] writes beside the target and renames over it only once
//! every byte is on disk, so a failed or interrupted run leaves the old file or none.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What makes a file itself, whatever name or descriptor reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileId {
    /// An existing file: its device and inode.
    Existing {
        /// The device holding it.
        device: u64,
        /// Its inode on that device.
        inode: u64,
    },
    /// A path with nothing there yet: its folder's canonical path and its name.
    Absent {
        /// The canonical path of the folder it would be created in.
        folder: PathBuf,
        /// Its name in that folder.
        name: OsString,
    },
}

impl FileId {
    /// The identity of what `path` names, following symbolic links.
    ///
    /// # Errors
    ///
    /// When the path exists but cannot be examined, or its folder does not exist.
    pub fn of_path(path: &Path) -> io::Result<Self> {
        match fs::metadata(path) {
            Ok(meta) => Ok(Self::of_metadata(&meta, path)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let name = path.file_name().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "the path names no file")
                })?;
                let folder = folder_of(path).canonicalize()?;
                Ok(Self::Absent {
                    folder,
                    name: name.to_owned(),
                })
            }
            Err(err) => Err(err),
        }
    }

    /// The identity of an open file.
    ///
    /// # Errors
    ///
    /// When the file cannot be examined.
    pub fn of_file(file: &File) -> io::Result<Self> {
        Ok(Self::of_metadata(&file.metadata()?, Path::new("")))
    }

    #[cfg(unix)]
    fn of_metadata(meta: &fs::Metadata, _path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self::Existing {
            device: meta.dev(),
            inode: meta.ino(),
        }
    }

    #[cfg(not(unix))]
    fn of_metadata(_meta: &fs::Metadata, path: &Path) -> Self {
        // Without inodes, the canonical path is the best identity there is.
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        Self::Absent {
            folder: canonical.parent().map(Path::to_owned).unwrap_or_default(),
            name: canonical
                .file_name()
                .map(ToOwned::to_owned)
                .unwrap_or_default(),
        }
    }
}

/// The folder a path's file lives in: its parent, or `.` for a bare name.
#[must_use]
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Who may read a file being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    /// The usual permissions (0666 less the umask): the file holds nothing secret.
    Ordinary,
    /// Mode 0600: the file holds codes or keys.
    Private,
}

/// Options that create a file with mode 0600 (on Unix): for files that hold codes or keys.
#[must_use]
pub fn private_options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

/// A file being written beside its target, renamed over it by [`AtomicFile::commit`].
///
/// Dropped without a commit, the temporary file is removed and the target is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `target` through a temporary file in the same folder (a rename within
    /// one file system is atomic), named after the target and hidden.
    ///
    /// # Errors
    ///
    /// When the temporary file cannot be created.
    pub fn create(target: &Path, privacy: Privacy) -> io::Result<Self> {
        let name = target.file_name().map_or_else(
            || OsString::from("output"),
            |name| {
                let mut prefix = OsString::from(".");
                prefix.push(name);
                prefix.push(".");
                prefix
            },
        );
        let mut builder = tempfile::Builder::new();
        builder.prefix(&name).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = match privacy {
                Privacy::Ordinary => 0o666,
                Privacy::Private => 0o600,
            };
            builder.permissions(fs::Permissions::from_mode(mode));
        }
        #[cfg(not(unix))]
        let _ = privacy;
        let temp = builder.tempfile_in(folder_of(target))?;
        Ok(Self {
            temp,
            target: target.to_owned(),
        })
    }

    /// Where the bytes go until the commit.
    #[must_use]
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The file that will be renamed over.
    #[must_use]
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, syncs the bytes to disk, renames the temporary file over the target, and
    /// syncs the folder so that the rename survives a crash too.
    ///
    /// # Errors
    ///
    /// When syncing or renaming fails; the temporary file is then removed.
    pub fn commit(mut self) -> io::Result<()> {
        self.temp.flush()?;
        self.temp.as_file().sync_all()?;
        self.temp.persist(&self.target).map_err(|err| err.error)?;
        sync_folder(folder_of(&self.target));
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.temp.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Syncs a folder's entries. Best effort: some file systems refuse to open a folder for this,
/// and the data itself is already synced.
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_and_dot_paths_are_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        fs::write(&a, "x").unwrap();
        let b = dir.path().join("b.csv");
        fs::hard_link(&a, &b).unwrap();
        let dotted = dir.path().join(".").join("a.csv");
        let id = FileId::of_path(&a).unwrap();
        assert_eq!(FileId::of_path(&b).unwrap(), id);
        assert_eq!(FileId::of_path(&dotted).unwrap(), id);
        assert_eq!(FileId::of_file(&File::open(&b).unwrap()).unwrap(), id);
        let new = FileId::of_path(&dir.path().join("new.csv")).unwrap();
        let new_dotted = FileId::of_path(&dir.path().join(".").join("new.csv")).unwrap();
        assert_eq!(new, new_dotted);
        assert_ne!(new, id);
    }

    #[test]
    fn nothing_appears_without_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        fs::write(&target, "old").unwrap();
        let mut file = AtomicFile::create(&target, Privacy::Private).unwrap();
        file.write_all(b"new").unwrap();
        let temp = file.temp_path().to_owned();
        assert!(temp.exists());
        drop(file);
        assert!(!temp.exists());
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        let mut file = AtomicFile::create(&target, Privacy::Private).unwrap();
        file.write_all(b"new").unwrap();
        file.commit().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
