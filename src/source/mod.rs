//! temporary stub until the file source lands
pub mod file;
