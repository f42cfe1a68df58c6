//! RocksDB settings of the state stores.

use rocksdb::{BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, Options};

/// Compression of the data files of the state stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    None,
    /// Snappy.
    Snappy,
    /// LZ4: fast, with a fair ratio (the default).
    #[default]
    Lz4,
    /// Zstandard: a better ratio for more CPU.
    Zstd,
}

/// RocksDB settings, applied to every partition's database.
///
/// The defaults keep memory small (state lives on disk, not in memory):
/// a 16 MiB block cache and 8 MiB write buffers per partition. Data files
/// carry bloom filters (10 bits a key), so reading a key that has no state
/// yet rarely touches the disk; filters and indexes are kept in the block
/// cache, so memory does not grow with the size of the state.
///
/// # Examples
///
/// ```
/// use kstreams::{Application, Compression, RocksDbOptions};
///
/// let app = Application::builder()
///     .use_embedded_broker()
///     .rocksdb_options(
///         RocksDbOptions::default()
///             .block_cache_size(64 << 20)
///             .write_buffer_size(32 << 20)
///             .compression(Compression::Zstd),
///     )
///     .build()
///     .unwrap();
/// # drop(app);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RocksDbOptions {
    block_cache_size: usize,
    write_buffer_size: usize,
    compression: Compression,
}

impl Default for RocksDbOptions {
    fn default() -> Self {
        RocksDbOptions {
            block_cache_size: 16 << 20,
            write_buffer_size: 8 << 20,
            compression: Compression::Lz4,
        }
    }
}

impl RocksDbOptions {
    /// Bytes of the LRU block cache of each partition's database.
    /// Default: 16 MiB.
    pub fn block_cache_size(mut self, bytes: usize) -> Self {
        self.block_cache_size = bytes;
        self
    }

    /// Bytes of a memtable before it is flushed (RocksDB's
    /// `write_buffer_size`). Default: 8 MiB.
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.write_buffer_size = bytes;
        self
    }

    /// Compression of data files. Default: [`Compression::Lz4`].
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The block cache that every column family of one database shares.
    pub(crate) fn block_cache(&self) -> Cache {
        Cache::new_lru_cache(self.block_cache_size)
    }

    /// RocksDB options with these settings, reading through `cache`.
    pub(crate) fn to_rocksdb(&self, cache: &Cache) -> Options {
        let mut options = Options::default();
        options.set_write_buffer_size(self.write_buffer_size);
        options.set_compression_type(match self.compression {
            Compression::None => DBCompressionType::None,
            Compression::Snappy => DBCompressionType::Snappy,
            Compression::Lz4 => DBCompressionType::Lz4,
            Compression::Zstd => DBCompressionType::Zstd,
        });
        // A bloom filter over the memtable's keys too: a new key (a new
        // window, a new message key) skips its search.
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.02);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        // A read of a key that was never written (every new message key)
        // skips the data files instead of searching each of them, as Kafka
        // Streams' stores do.
        table.set_bloom_filter(10.0, false);
        // Filters and indexes live in the block cache, so memory stays
        // within it however big the store grows (those of the newest files
        // stay pinned there: they are read the most).
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // In 4 KB partitions, under a small top level that stays pinned: a
        // whole filter of a big file (1.2 MB for a million keys) would
        // otherwise be read back and checksummed at every lookup once the
        // cache has no room for it.
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        options.set_block_based_table_factory(&table);
        options
    }
}
