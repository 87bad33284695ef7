"""vlajax: massively parallel simulated RL and flow-matching VLA training in JAX."""
from setuptools import find_packages, setup

# The JAX / MuJoCo / MJX / Flax family is pinned to versions tested together.
CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "mujoco==4.0.0",
    "mujoco-mjx==3.17.0",
    "brax==0.14.2",
    "ml-collections==1.1.0",
    "absl-py>=2.1",
    "numpy>=2.0",
    # Evaluation statistics (vlajax.eval.stats: binomial intervals, exact tests, bootstrap).
    "scipy>=1.15",
    "tensorboardX>=2.6",
    "msgpack>=1.0",
    "websockets>=13",
    # RLDS / OXE data pipeline (vlajax.data); tested together with jax 0.10.2 and numpy 2.4 in one process.
    "tensorflow-cpu==2.21.0",
    "tensorflow-datasets==4.9.10",
    # HuggingFace PaliGemma weight import (vlajax.vla.hf_import) reads safetensors directly.
    "safetensors==0.8.0",
    # Rollout videos (vlajax.eval.video): H.264 through PyAV, captions drawn with Pillow.
    # LeRobot v3 datasets (vlajax.data.lerobot): mp4 decoded / encoded by PyAV, parquet by pyarrow.
    "av==18.1.0",
    "pyarrow==26.0.1",
    "pillow>=10",
]

setup(
    name="vlajax",
    version="0.1.0",
    description="Massively parallel simulated RL and pi0-style VLA training in JAX/Flax",
    python_requires=">=3.11",
    packages=find_packages(include=["vlajax", "vlajax.*", "experiments", "experiments.*"]),
    package_data={"vlajax": ["envs/assets/*.xml"]},
    install_requires=CORE,
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "flake8==7.5.0",
                # PyTorch PaliGemma logits check and local tokenizer tests (tests/test_vla_hf_import.py).
                "torch==2.13.0", "transformers==5.24.0", "tokenizers==0.23.3",
                # so the jax-vs-warp env tests run in CI (tests/test_envs_warp.py)
                "warp-lang==1.19.0",
                # the W&B metric writer's offline test (tests/test_core_metrics_wandb.py)
                "wandb==0.31.0"],
        # MJX's Warp backend (env config `impl="warp"`); MJX vendors MuJoCo Warp, this is Warp itself.
        "warp": ["warp-lang==1.19.0"],
        # The Weights & Biases metric writer (`--config.run.loggers=jsonl,tensorboard,wandb`).
        "wandb": ["wandb==0.31.0"],
    },
)
