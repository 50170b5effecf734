//! Progress through notifications, kept on disk so that a consumer restarted mid-notification
//! resumes where it stopped.
//!
//! A notification is accepted by writing its checkpoint; the webhook is answered after that,
//! so an accepted notification is never lost. Each page's events are recorded before the
//! checkpoint moves past the page, so a crash replays at most one page, whose events the
//! recorder finds already marked ([`crate::recorder`]). The checkpoint is removed once the
//! notification is acknowledged (marked read, or deleted).
//!
//! One JSON file per notification, written to a temporary file, flushed and renamed over the
//! old one, so a crash leaves either the old or the new checkpoint, never a torn one.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::KubeError;

/// Where a notification's pages come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Clair v4: the pull API's callback URL for the notification.
    V4 {
        /// `notification_id` of the webhook.
        id: String,
        /// `callback` of the webhook.
        callback: String,
    },
    /// Clair v2/v3: a notification name, paged through the v3 gRPC API the consumer is
    /// configured with.
    V3 {
        /// `Notification.Name` of the webhook.
        name: String,
    },
}

impl Source {
    /// What identifies the notification (its id).
    pub fn key(&self) -> &str {
        match self {
            Source::V4 { id, .. } => id,
            Source::V3 { name } => name,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Source::V4 { .. } => "v4",
            Source::V3 { .. } => "v3",
        }
    }
}

/// How far a notification has been processed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// v4: the `next` token of the page to read (`None`: the first page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Pages processed.
    #[serde(default)]
    pub pages: u64,
    /// Every page is processed: only the acknowledgement is left.
    #[serde(default)]
    pub done: bool,
    /// v3: where each stream is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Streams>,
}

/// v3: how far the old and the new stream of a notification are ([`crate::v3`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streams {
    /// The stream of the vulnerability's old version.
    pub old: Stream,
    /// The stream of its new version.
    pub new: Stream,
}

/// One stream's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// The token of the page being read ("" is the first page).
    #[serde(default)]
    pub page: String,
    /// Every ancestry of the stream with an index at most this is done; `None`: none yet.
    /// Indexes strictly increase across pages, so nothing at or below it comes again.
    #[serde(default)]
    pub through: Option<i32>,
}

/// One notification's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where it comes from.
    pub source: Source,
    /// How far it is.
    #[serde(default)]
    pub position: Position,
    /// When it was accepted (Unix seconds), for the lag metric; `None` in checkpoints written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<i64>,
}

/// The checkpoints of a consumer: a directory.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    dir: PathBuf,
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> KubeError {
    move |e| KubeError::State(format!("{what}: {e}"))
}

impl Checkpoints {
    /// The checkpoints kept in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<Checkpoints, KubeError> {
        std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        Ok(Checkpoints {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, source: &Source) -> PathBuf {
        // Names and ids come from outside: the file name is a hash of the kind and key.
        let mut h = Sha256::new();
        h.update(source.kind().as_bytes());
        h.update([0]);
        h.update(source.key().as_bytes());
        self.dir
            .join(format!("{}.json", &hex::encode(h.finalize())[..32]))
    }

    /// The checkpoint of `source`, if it has one.
    pub fn load(&self, source: &Source) -> Result<Option<Checkpoint>, KubeError> {
        let path = self.path(source);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| KubeError::State(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("reading {}", path.display()))(e)),
        }
    }

    /// Writes `checkpoint` durably (module doc).
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<(), KubeError> {
        let path = self.path(&checkpoint.source);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(checkpoint)
            .map_err(|e| KubeError::State(format!("encoding a checkpoint: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // The rename itself is durable once the directory is.
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(io_error(format!("writing {}", path.display())))
    }

    /// Forgets `source` (acknowledged).
    pub fn remove(&self, source: &Source) -> Result<(), KubeError> {
        let path = self.path(source);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(format!("removing {}", path.display()))(e)),
        }
    }

    /// Every checkpoint, to resume at start-up. A file that does not read is an error naming
    /// it: a checkpoint is never silently dropped.
    pub fn all(&self) -> Result<Vec<Checkpoint>, KubeError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(io_error(format!("listing {}", self.dir.display())))?;
        for entry in entries {
            let path = entry
                .map_err(io_error(format!("listing {}", self.dir.display())))?
                .path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes =
                std::fs::read(&path).map_err(io_error(format!("reading {}", path.display())))?;
            out.push(
                serde_json::from_slice(&bytes)
                    .map_err(|e| KubeError::State(format!("{}: {e}", path.display())))?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_survive_a_reopen_and_go_when_removed() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = Checkpoints::open(&dir.path().join("state")).expect("opened");
        let v4 = Source::V4 {
            id: "5a3e…".into(),
            callback: "http://tocsin:6060/notifier/api/v1/notification/5a3e".into(),
        };
        let odd = Source::V4 {
            id: "../../etc/passwd".into(),
            callback: "http://tocsin:6060/notifier/api/v1/notification/x".into(),
        };
        assert_eq!(store.load(&v4).expect("read"), None);
        let mut c = Checkpoint {
            source: v4.clone(),
            position: Position::default(),
            accepted_at: Some(1_765_000_000),
        };
        store.save(&c).expect("saved");
        c.position.next = Some("token-2".into());
        c.position.pages = 1;
        store.save(&c).expect("saved");
        store
            .save(&Checkpoint {
                source: odd.clone(),
                position: Position {
                    done: true,
                    ..Position::default()
                },
                accepted_at: None,
            })
            .expect("saved");

        let again = Checkpoints::open(&dir.path().join("state")).expect("reopened");
        assert_eq!(again.load(&v4).expect("read"), Some(c));
        let odd_back = again.load(&odd).expect("read").expect("kept");
        assert!(odd_back.position.done);
        assert_eq!(again.all().expect("listed").len(), 2);
        // The name is hashed: nothing is written outside the directory.
        assert!(!dir.path().join("etc").exists());

        again.remove(&v4).expect("removed");
        again.remove(&v4).expect("removing twice is fine");
        assert_eq!(again.load(&v4).expect("read"), None);
        assert_eq!(again.all().expect("listed").len(), 1);
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = Checkpoints::open(dir.path()).expect("opened");
        std::fs::write(dir.path().join("broken.json"), b"{not json").expect("written");
        let err = store.all().expect_err("damaged");
        assert!(err.to_string().contains("broken.json"), "{err}");
    }
}
