//! A set of images to rank or inspect: a folder of image files, or an Arrow file in
//! upstream's schema (its binary `image` column, named by `image_id` when present).
use std::io::Read;
use std::path::{Path, PathBuf};

use image::RgbaImage;

use super::arrow::ArrowFile;
use super::image_io::{decode_rgba, open_rgba, Format};
use crate::{Error, Result};

/// Where the images are.
enum Source {
    /// Image files, sorted by name.
    Files(Vec<PathBuf>),
    /// An Arrow table's `image` column.
    Arrow(ArrowFile),
}

/// Images addressed by index, each with a name for people (file name or `image_id`).
pub struct ImageSet {
    source: Source,
    names: Vec<String>,
}

/// Whether the first bytes of `path` are a PNG, JPEG, TIFF, BMP or DICOM header.
fn looks_like_image(path: &Path) -> bool {
    let mut head = Vec::with_capacity(136);
    let read = std::fs::File::open(path).and_then(|f| f.take(136).read_to_end(&mut head));
    read.is_ok() && Format::sniff(&head).is_some()
}

impl ImageSet {
    /// Opens `path`: a folder (its image files, recognised by their first bytes, so DICOM
    /// files without an extension count; other files and subfolders are left out) or an
    /// `.arrow` file with a binary `image` column.
    pub fn open(path: &Path) -> Result<ImageSet> {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
            let mut files = Vec::new();
            for e in entries {
                let p = e.map_err(|e| Error::io(path, e))?.path();
                if p.is_file() && looks_like_image(&p) {
                    files.push(p);
                }
            }
            files.sort();
            if files.is_empty() {
                return Err(Error::input(path.display().to_string(), "the folder holds no PNG, JPEG, TIFF, BMP or DICOM file"));
            }
            let names = files.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect();
            Ok(ImageSet { source: Source::Files(files), names })
        } else if path.is_file() {
            let table = ArrowFile::open(path)?;
            table.check_binary("image")?;
            let names = match table.data_type("image_id") {
                Ok(_) => table.string_column("image_id")?,
                Err(_) => (0..table.num_rows()).map(|r| format!("row {r}")).collect(),
            };
            if names.is_empty() {
                return Err(table.error("image", "no rows"));
            }
            Ok(ImageSet { source: Source::Arrow(table), names })
        } else {
            Err(Error::input(path.display().to_string(), "no such folder or Arrow file"))
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the set is empty (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of image `i` (file name, or the row's `image_id`; empty past the end).
    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map(String::as_str).unwrap_or("")
    }

    /// Decodes image `i` to RGBA.
    pub fn decode(&self, i: usize) -> Result<RgbaImage> {
        if i >= self.len() {
            return Err(Error::input("image index", format!("{i} is past the {} images of the set", self.len())));
        }
        match &self.source {
            Source::Files(files) => open_rgba(&files[i]),
            Source::Arrow(table) => decode_rgba(table.binary("image", i)?, &format!("{}, row {i}", table.path.display())),
        }
    }
}
