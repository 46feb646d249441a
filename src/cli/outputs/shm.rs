//! The shared-memory output's flag: `--shm SERVICE`.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use super::{OutputEntry, OutputFlags, StreamSettings};
use crate::stream::shm::{self, ShmConfig};

/// The shared-memory output's flags.
#[derive(Debug, Args)]
pub struct ShmArgs {
    /// Also (or, without --port, only) publish every frame on the iceoryx2 shared-memory service
    /// SERVICE (e.g. glstream/frames): payload [u8], user header glstream::FrameHeader (see
    /// README). Default policy: latest.
    #[arg(long, value_name = "SERVICE")]
    pub shm: Option<String>,
}

impl OutputFlags for ShmArgs {
    fn asked(&self) -> bool {
        self.shm.is_some()
    }

    fn configure(
        &self,
        _stream: &StreamSettings<'_>,
        _default: bool,
        outputs: &mut Vec<OutputEntry>,
    ) -> Result<()> {
        if let Some(service) = &self.shm {
            shm::check_service_name(service)?;
            outputs.push(Arc::new(ShmConfig {
                service: service.clone(),
            }));
        }
        Ok(())
    }
}
