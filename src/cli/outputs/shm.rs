//! The shared-memory output's flag: `--shm SERVICE`.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use super::{OutputEntry, OutputFlags, StreamSettings};
use crate::stream::shm::{self, ShmConfig, ShmReadback};

/// The shared-memory output's flags.
#[derive(Debug, Args)]
pub struct ShmArgs {
    /// Also (or, without --port, only) publish every frame on the iceoryx2 shared-memory service
    /// SERVICE (e.g. glstream/frames): payload [u8], user header glstream::FrameHeader (see
    /// README). Default policy: latest.
    #[arg(long, value_name = "SERVICE")]
    pub shm: Option<String>,

    /// How frames get into the shared-memory samples: auto reads each frame straight into its
    /// sample when shared memory is the only output, the renderer is a software one (llvmpipe)
    /// and a frame is 3 MiB or more, and goes through the PBO ring otherwise; pbo always goes
    /// through the ring
    /// and copies each frame into its sample; direct reads straight into samples on any
    /// renderer (synchronous: on a GPU, for measuring).
    #[arg(long, value_enum, value_name = "MODE")]
    pub shm_readback: Option<ShmReadback>,
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
        if self.shm_readback.is_some() && self.shm.is_none() {
            anyhow::bail!("--shm-readback needs --shm (it says how frames get into shared memory)");
        }
        if let Some(service) = &self.shm {
            shm::check_service_name(service)?;
            outputs.push(Arc::new(ShmConfig {
                service: service.clone(),
                readback: self.shm_readback.unwrap_or_default(),
            }));
        }
        Ok(())
    }
}
