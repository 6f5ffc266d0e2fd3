"""The conditioning registry: what a DiT is conditioned on, where the training conditions come from, and
how conditions are drawn for unconditional generation.

    name       DiT conditioner   training conditions                          generation draws them from
    dlc        'dlc'             tokens of the codes stage                    the SEDD prior (stages.prior)
    rcg        'vector'          RCG vectors (stages.representation, kind     the RDM prior (stages.representation)
                                 'rcg': random projection, per-sample std.)
    embedding  'vector'          the encoder's continuous embedding           the RDM prior (stages.representation)
                                 (stages.representation, kind 'embedding')
    none       'none'            -                                            -

For the 'vector' rows the representation kind is the conditioning's name. Class labels ('class') register here
with the stages that produce them; `dlc.dit` already has that conditioner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .registry import Registry


@dataclass(frozen=True)
class Conditioning:
    name: str
    dit_cond: str                     # dlc.dit conditioner: 'dlc' | 'vector' | 'class' | 'none'
    representation: Optional[str]     # the stage whose output conditions training (None: unconditional)
    prior: Optional[str]              # the stage that draws conditions at generation time
    description: str = ""


CONDITIONING: Registry[Conditioning] = Registry("conditioning")
CONDITIONING.register("dlc", Conditioning("dlc", "dlc", "codes", "sedd",
                                          "DLC tokens; c ~ SEDD prior, x ~ DiT(c)"))
CONDITIONING.register("rcg", Conditioning("rcg", "vector", "representation", "rdm",
                                          "RCG: frozen random projection of the encoder embedding to 256-d, "
                                          "standardised per sample; r ~ RDM prior, x ~ DiT(r)"))
CONDITIONING.register("embedding", Conditioning("embedding", "vector", "representation", "rdm",
                                                "the encoder's continuous embedding; r ~ RDM prior, x ~ DiT(r)"))
CONDITIONING.register("none", Conditioning("none", "none", None, None, "unconditional DiT"))
