"""The trained line finder: PAGE/ALTO reading, kernel targets and boxes, the network, and a tiny training run."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from htr.metrics import box_iou, box_matches, matched_boxes
from htr.pages.line_detector import LineDetector, widened
from htr.pages.line_finder import OUTPUT_STRIDE, LineFinder, boxes_from_kernels, network_input, reading_order
from htr.pages.page_xml import read_page
from htr.train_line_detector import kernel_target
from tests.test_segment import make_page

PAGE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">
  <Metadata><Creator>test</Creator><Created>2026-01-01T00:00:00</Created>
    <LastChange>2026-01-01T00:00:00</LastChange></Metadata>
  <Page imageFilename="{image}" imageWidth="{width}" imageHeight="{height}">
    <TextRegion id="r1"><Coords points="0,0 {width},0 {width},{height} 0,{height}"/>
{lines}
    </TextRegion>
  </Page>
</PcGts>
"""
PAGE_LINE = """      <TextLine id="l{i}"><Coords points="{points}"/><Baseline points="{baseline}"/>
        <TextEquiv><Unicode>{text}</Unicode></TextEquiv></TextLine>"""
ALTO_XML = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">
  <Description><MeasurementUnit>pixel</MeasurementUnit>
    <sourceImageInformation><fileName>scan.jpg</fileName></sourceImageInformation></Description>
  <Layout><Page WIDTH="800" HEIGHT="600" PHYSICAL_IMG_NR="1" ID="p1"><PrintSpace>
    <TextBlock ID="b1">
      <TextLine ID="l1" BASELINE="10 50 300 52" HPOS="10" VPOS="20" WIDTH="290" HEIGHT="40">
        <Shape><Polygon POINTS="10 20 300 20 300 60 10 60"/></Shape>
        <String CONTENT="Dear" HPOS="10" VPOS="20" WIDTH="80" HEIGHT="40"/><SP/>
        <String CONTENT="Sir," HPOS="100" VPOS="20" WIDTH="80" HEIGHT="40"/>
      </TextLine>
      <TextLine ID="l2" HPOS="10" VPOS="80" WIDTH="200" HEIGHT="30"><String CONTENT="yours"/></TextLine>
    </TextBlock>
  </PrintSpace></Page></Layout>
</alto>
"""


def write_page_xml(path: Path, image: str, size: tuple[int, int], boxes: list, texts: list[str]) -> None:
    lines = "\n".join(
        PAGE_LINE.format(i=i, points=f"{a},{b} {c},{b} {c},{d} {a},{d}", baseline=f"{a},{d - 4} {c},{d - 4}", text=t)
        for i, ((a, b, c, d), t) in enumerate(zip(boxes, texts))
    )
    path.write_text(PAGE_XML.format(image=image, width=size[0], height=size[1], lines=lines), encoding="utf-8")


def test_page_xml_gives_polygons_baselines_text_and_image(tmp_path):
    write_page_xml(tmp_path / "p.xml", "p.png", (400, 300), [(10, 20, 200, 50), (12, 60, 180, 90)], ["one", "two"])
    page = read_page(tmp_path / "p.xml")
    assert (page.image, page.size) == ("p.png", (400, 300))
    assert [line.text for line in page.lines] == ["one", "two"]
    assert page.lines[0].box == (10, 20, 201, 51)
    assert page.lines[1].baseline == [(12.0, 86.0), (180.0, 86.0)]


def test_alto_joins_strings_and_falls_back_to_the_line_box(tmp_path):
    (tmp_path / "a.xml").write_text(ALTO_XML, encoding="utf-8")
    page = read_page(tmp_path / "a.xml")
    assert (page.image, page.size) == ("scan.jpg", (800, 600))
    assert [line.text for line in page.lines] == ["Dear Sir,", "yours"]
    assert page.lines[0].baseline == [(10.0, 50.0), (300.0, 52.0)]
    assert page.lines[1].box == (10, 80, 210, 110)  # no polygon: HPOS/VPOS/WIDTH/HEIGHT (WIDTH 200 from 10)


def test_kernels_are_the_middle_of_each_line_and_grow_back_to_its_box():
    boxes = [(20, 10, 300, 40), (30, 44, 250, 80), (25, 90, 120, 110)]  # the first two nearly touch
    polygons = [np.array([[a, b], [c, b], [c, d], [a, d]], np.float32) for a, b, c, d in boxes]
    target = kernel_target((128, 320), polygons)
    for _, b, _, d in boxes:  # only the middle of each line is marked, about 40% of its height
        rows = np.flatnonzero(target[b:d, 100]) + b
        assert rows.min() >= b + 0.25 * (d - b) and rows.max() <= d - 0.25 * (d - b)
        assert 0.3 <= len(rows) / (d - b) <= 0.5
    assert target[40:46, 100].sum() == 0  # the lines' kernels stay apart where the lines touch
    found = boxes_from_kernels(target.astype(np.float32), scale=1.0)
    assert len(found) == 3
    assert all(box_iou(f, t) >= 0.8 for f, t in zip(found, boxes)), found


def test_skewed_polygon_gives_a_slanted_kernel_and_one_box():
    polygon = np.array([[10, 30], [300, 10], [300, 40], [10, 60]], np.float32)  # rises 20 px over the line
    target = kernel_target((80, 320), [polygon])
    (found,) = boxes_from_kernels(target.astype(np.float32), scale=2.0)
    assert box_iou(found, (20, 20, 600, 120)) >= 0.8, found


def test_network_input_is_shrunk_and_padded_and_the_output_is_half_size():
    ink = np.random.default_rng(0).random((700, 1500), dtype=np.float32)
    padded, factor = network_input(ink, side=512)
    assert factor == pytest.approx(512 / 1500)
    assert padded.shape == (256, 512) and padded[239:].max() == 0  # 700 * 512/1500 = 239 rows, then padding
    logits = LineDetector(width=4).eval()(torch.from_numpy(padded)[None, None])
    assert logits.shape == (1, 1, 256 // OUTPUT_STRIDE, 512 // OUTPUT_STRIDE)


def test_a_small_image_is_read_at_the_scale_its_letters_need_never_blown_up_past_its_own_size():
    def written(height: int, width: int, letter: int) -> np.ndarray:  # letter-sized blobs in a row, mid-height
        ink = np.zeros((height, width), np.float32)
        for left in range(4, width - letter, 2 * letter):
            ink[(height - letter) // 2 : (height + letter) // 2, left : left + letter] = 1
        return ink

    word = written(64, 200, 30)  # a word cut out at its own scale: letters 30 px, in the finder's range of 7-27.5
    padded, factor = network_input(word, side=1280, letter_range=(7.0, 27.5))
    assert factor == 1.0 and padded.shape == (64, 224)  # not 6.4x, nor the 3.2x (long side 640) it was before
    tiny = written(40, 120, 2)  # tiny writing in a small image: still scaled up until its letters are readable
    _, factor = network_input(tiny, side=1280, letter_range=(7.0, 27.5))
    assert factor >= 3.5
    page = written(700, 1500, 20)  # a page: as before, its long side between side / 2 and 2 x side
    _, factor = network_input(page, side=1280, letter_range=(7.0, 27.5))
    assert 640 <= 1500 * factor <= 2560


def test_a_widened_finder_computes_the_same_map_then_trains_its_new_channels():
    torch.manual_seed(0)
    narrow = LineDetector(width=4)
    with torch.no_grad():  # trained-looking norms, so that copying them matters
        for module in narrow.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.2, 0.2)
    narrow.eval()
    wide = widened(narrow, 6).eval()
    assert wide.config == {"width": 6} and wide.head.weight.shape == (1, 6, 1, 1)
    ink = torch.rand(2, 1, 64, 96)
    torch.testing.assert_close(wide(ink), narrow(ink), rtol=0, atol=1e-5)
    wide.train()
    optimizer = torch.optim.SGD(wide.parameters(), lr=0.1)
    wide(ink).square().mean().backward()
    assert wide.head.weight.grad[0, 4:].abs().sum() > 0  # the zero weights that read the new channels learn first,
    optimizer.step()
    optimizer.zero_grad()
    wide(ink).square().mean().backward()
    assert wide.stem[0].weight.grad[4:].abs().sum() > 0  # then the new channels themselves
    with pytest.raises(ValueError, match="cannot widen"):
        widened(wide, 4)


def test_matched_boxes_is_one_to_one():
    truth = [(0, 0, 100, 20), (0, 30, 100, 50)]
    assert matched_boxes([(0, 0, 100, 20), (2, 1, 100, 21)], truth) == 1  # two found for one line: one match
    assert matched_boxes([(0, 0, 100, 50)], truth) == 0  # one box over both lines: IoU 0.4 with each
    assert box_matches([(0, 1, 100, 20), (0, 0, 100, 50), (0, 30, 100, 50)], truth) == [(2, 1), (0, 0)]  # best first


def finder_training_argv(tmp_path: Path, output: Path) -> list[str]:
    """htr.train_line_detector's arguments for 3 generated PAGE XML pages and 3 composed ones, a tiny network."""
    from tests.conftest import write_parquet_dataset

    pages = tmp_path / "pages"
    pages.mkdir()
    for k in range(3):
        image, boxes = make_page(count=4, seed=k)
        image.save(pages / f"page{k}.png")
        write_page_xml(pages / f"page{k}.xml", f"page{k}.png", image.size, boxes, ["x"] * len(boxes))
    dataset = write_parquet_dataset(tmp_path / "lines", n_train=16, n_val=2, n_test=2)
    return ["htr.train_line_detector", "--pages", str(pages), "--composed", str(dataset), "--composed-pages", "3",
            "--output", str(output), "--batch-size", "2", "--width", "4", "--validate-every", "2",
            "--held-out", "0.2"]  # fmt: skip


def test_training_on_page_xml_and_composed_pages_writes_a_finder_that_loads(tmp_path, monkeypatch):
    from htr import train_line_detector
    from htr.cli.train_lines import main as train_lines

    output = tmp_path / "finder.pt"
    argv = finder_training_argv(tmp_path, output)
    monkeypatch.setattr(sys, "argv", [*argv, "--steps", "4"])
    train_lines()
    finder = LineFinder(output)
    assert finder.network.config == {"width": 4} and 0 < finder.threshold < 1
    trained_on = torch.load(output, weights_only=True)["trained_on"]  # provenance: the pages that taught it
    assert len(trained_on["pages"]) + sum(trained_on["composed_pages"].values()) == 5  # 6 pages, 1 held out
    assert all(name.startswith("page") for name in trained_on["pages"])
    state = torch.load(output.with_name("finder.last.pt"), weights_only=False)
    assert state["step"] == 4 and len(state["history"]) == 2
    monkeypatch.setattr(sys, "argv", [*argv, "--steps", "6"])
    train_lines()  # resumes from the last state and goes on to step 6
    assert torch.load(output.with_name("finder.last.pt"), weights_only=False)["step"] == 6
    ink = np.zeros((300, 400), np.float32)
    assert all(len(b) == 4 for b in finder.boxes(ink))
    assert finder.end_extend in train_line_detector.END_EXTENDS  # chosen on the held-out pages with the threshold
    # fine-tuning: --init-from starts from a finder's weights, at its width
    tuned = tmp_path / "tuned.pt"
    start = torch.load(output, weights_only=True)["model"]
    argv[argv.index("--output") + 1] = str(tuned)
    monkeypatch.setattr(sys, "argv", [*argv, "--steps", "1", "--lr", "1e-9", "--init-from", str(output)])
    train_lines()
    weights = torch.load(tuned.with_name("tuned.last.pt"), weights_only=False)["model"]
    assert weights["head.weight"].shape == start["head.weight"].shape  # width 4, the start's
    learned = [k for k in start if k.endswith(("weight", "bias"))]
    assert all(torch.allclose(weights[k], start[k], atol=1e-4) for k in learned)
    # ... or wider (--width 8): the start's weights in its first channels
    wider = tmp_path / "wider.pt"
    argv[argv.index("--output") + 1], argv[argv.index("--width") + 1] = str(wider), "8"
    monkeypatch.setattr(sys, "argv", [*argv, "--steps", "1", "--lr", "1e-9", "--init-from", str(output)])
    train_lines()
    weights = torch.load(wider.with_name("wider.last.pt"), weights_only=False)["model"]
    assert weights["head.weight"].shape == (1, 8, 1, 1) and LineFinder(wider).network.config == {"width": 8}
    assert torch.allclose(weights["head.weight"][:, :4], start["head.weight"], atol=1e-4)
    assert torch.allclose(weights["stem.0.weight"][:4], start["stem.0.weight"], atol=1e-4)


def test_with_ema_decay_the_weight_average_is_validated_saved_and_resumed(tmp_path, monkeypatch):
    from htr.cli.train_lines import main as train_lines

    output = tmp_path / "finder.pt"
    argv = [*finder_training_argv(tmp_path, output), "--lr", "1e-2", "--ema-decay", "0.5"]
    monkeypatch.setattr(sys, "argv", [*argv, "--steps", "2"])
    train_lines()  # one validation, at step 2: the finder written is the average at step 2
    saved = torch.load(output, weights_only=True)["model"]
    last = torch.load(output.with_name("finder.last.pt"), weights_only=False)
    average = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert saved.keys() == average.keys() == last["model"].keys()
    assert all(torch.equal(saved[k], average[k]) for k in saved)
    assert not all(torch.equal(saved[k], last["model"][k]) for k in saved)  # not the raw weights
    monkeypatch.setattr(sys, "argv", [*argv, "--steps", "3"])
    train_lines()  # resumes the average too: its count goes on from 2
    assert int(torch.load(output.with_name("finder.last.pt"), weights_only=False)["ema"]["n_averaged"]) == 3


def test_held_out_f1_is_reported_by_collection_and_can_pick_the_best_by_their_mean(tmp_path):
    from htr.cli.train_lines import main as train_lines
    from htr.train_line_detector import collection_of

    pages = str(tmp_path / "pages")
    assert collection_of(f"{pages}/wills/p1.xml", [pages]) == f"{pages}/wills"  # a folder of collections
    assert collection_of(f"{pages}/p1.xml", [pages]) == pages  # a folder that is one collection
    assert collection_of("lines#3", [pages]) == "composed" and collection_of("lines#letter3", []) == "composed letters"
    output = tmp_path / "finder.pt"
    argv = finder_training_argv(tmp_path, output)[1:]
    argv[argv.index("--held-out") + 1] = "0.5"  # 3 of the 6 pages: composed ones and PAGE ones
    train_lines([*argv, "--steps", "2", "--keep-by", "collections"])
    (entry,) = torch.load(output.with_name("finder.last.pt"), weights_only=False)["history"]
    assert set(entry["collections"]) == {pages, "composed"}
    assert entry["f1"] == pytest.approx(sum(entry["collections"].values()) / 2, abs=1e-3)  # their mean
    saved = torch.load(output, weights_only=True)
    assert saved["held_out_by"] == "collections" and saved["held_out_collections"] == entry["collections"]
    state = output.with_name("finder.last.pt")
    last = torch.load(state, weights_only=False)
    torch.save({**last, "best": 2.0}, state)  # a best no F1 reaches, as if measured by all lines
    train_lines([*argv, "--steps", "4", "--keep-by", "pages"])  # resumed, kept by another F1: its best starts over
    assert torch.load(output, weights_only=True)["held_out_by"] == "pages"


def test_the_finder_trains_at_the_precision_asked_for_and_auto_is_fp32_without_native_bf16(
    tmp_path, monkeypatch, capsys
):
    from htr import runtime
    from htr.cli.train_lines import main as train_lines

    entered = []
    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: entered.append(k.get("dtype")) or real_autocast(*a, **k))
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)  # an AVX2 CPU: emulated bf16 is slow there
    for precision, expected, said in (("auto", [], "(fp32)"), ("bf16", [torch.bfloat16], "(bf16)")):
        output = tmp_path / precision / "finder.pt"
        output.parent.mkdir()
        train_lines([*finder_training_argv(output.parent, output)[1:], "--steps", "1", "--precision", precision])
        assert entered == expected and said in capsys.readouterr().out  # "training on <CPU>, 2 cores (fp32)"
        assert LineFinder(output).network.config == {"width": 4}
        entered.clear()


def test_close_lines_on_a_slant_stay_apart_and_pieces_of_one_line_are_joined():
    """Four slanted lines, 24 px apart, whose boxes share most of their rows (each rises 90 px over the page),
    and a fifth whose kernel a word gap cut in two: one box each."""
    slanted = [np.array([[10, top + 90], [590, top], [590, top + 20], [10, top + 110]], np.float32)
               for top in (10, 34, 58, 82)]  # fmt: skip
    target = kernel_target((260, 600), slanted).astype(np.float32)
    target[236:244, 15:280] = target[236:244, 283:585] = 1  # a line's kernel cut by a gap of 0.15 line heights
    found = boxes_from_kernels(target, scale=1.0)
    assert len(found) == 5, found
    assert [b[3] for b in found[:4]] == sorted(b[3] for b in found[:4])  # top to bottom, one per slanted line
    assert all(b[3] - b[1] < 140 for b in found[:4])  # none spans two of them (one line's box: about 120 px)
    assert found[4][0] < 30 and found[4][2] > 570  # the cut line, joined across its word gap


def test_reading_order_is_rows_top_to_bottom_then_left_to_right():
    cells = [(300, 52, 400, 80), (0, 50, 100, 78), (150, 10, 250, 40), (0, 12, 100, 40), (150, 48, 250, 79)]
    assert reading_order(cells) == [cells[3], cells[2], cells[1], cells[4], cells[0]]


def test_slanted_lines_whose_boxes_share_rows_are_read_top_to_bottom_not_left_to_right():
    lines = [(40, 100, 1000, 180), (20, 140, 990, 220), (60, 180, 1010, 260)]  # centres 0.5 line heights apart
    assert reading_order(lines) == lines  # not sorted by their left ends
    address, date = (20, 150, 600, 180), (700, 150, 990, 175)  # side by side, above a line whose box reaches up
    assert reading_order([lines[1], date, address]) == [address, date, lines[1]]


def test_parts_much_thinner_than_the_pages_lines_are_not_lines():
    probability = np.zeros((120, 300), np.float32)
    for top in (10, 40, 70):  # three lines of kernels 6 rows thick
        probability[top : top + 6, 20:280] = 1
    probability[25:28, 100:130] = 1  # a flourish's stroke between them: half as thick
    found = boxes_from_kernels(probability, 1.0)
    assert [(b[1] + b[3]) / 2 for b in found] == pytest.approx([13, 43, 73], abs=1)


def test_the_exported_line_finder_finds_the_same_lines_without_pytorch(tmp_path):
    """The shipped finder, exported to ONNX: the same boxes on a composed page, and predict.py --onnx reading
    the page with it never imports PyTorch."""
    import json
    import subprocess

    from htr.alphabet import Alphabet
    from htr.checkpoint import atomic_save, model_checkpoint
    from htr.export import export_line_finder, export_onnx
    from htr.model import CRNN, ModelConfig
    from htr.reading.preprocess import ink_map

    root = Path(__file__).resolve().parents[1]
    export_line_finder(root / "line_finder.pt", tmp_path / "finder.onnx")
    exported, original = LineFinder(tmp_path / "finder.onnx"), LineFinder(root / "line_finder.pt")
    assert exported.settings() == original.settings()
    page, truth = make_page(3, seed=4)
    ink = ink_map(np.asarray(page))
    found = exported.boxes(ink)
    assert found == original.boxes(ink) and len(found) == 3
    np.testing.assert_allclose(exported.probability(ink)[0], original.probability(ink)[0], atol=1e-4)

    page.save(tmp_path / "page.png")
    alphabet = Alphabet("abcdefghijklmnopqrstuvwxyz ")
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 16]],
                         rnn_hidden=16, rnn_layers=1)  # fmt: skip
    atomic_save(model_checkpoint(CRNN(config).eval(), alphabet), tmp_path / "reader.pth")
    export_onnx(tmp_path / "reader.pth", tmp_path / "reader.onnx")
    without_torch = (
        "import sys, predict; code = predict.main(sys.argv[1:]); "
        "print('PyTorch imported' if 'torch' in sys.modules else 'no PyTorch', file=sys.stderr); sys.exit(code)"
    )
    run = subprocess.run([sys.executable, "-c", without_torch, "--onnx", str(tmp_path / "reader.onnx"), "--decoder",
                          "greedy", "--line-finder", str(tmp_path / "finder.onnx"), "--format", "json",
                          str(tmp_path / "page.png")], cwd=root, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == "no PyTorch"
    assert len(json.loads(run.stdout)["lines"]) == 3  # the page read as its three lines


def test_an_onnx_reader_takes_the_finders_export_beside_the_shipped_finder_while_it_is_fresh(tmp_path, monkeypatch):
    import shutil

    import torch

    import htr.inference
    from htr.alphabet import Alphabet
    from htr.checkpoint import atomic_save, model_checkpoint
    from htr.export import export_line_finder, export_onnx
    from htr.model import CRNN, ModelConfig

    alphabet = Alphabet("ab ")
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 8]], rnn_hidden=8,
                         rnn_layers=1)  # fmt: skip
    atomic_save(model_checkpoint(CRNN(config).eval(), alphabet), tmp_path / "reader.pth")
    export_onnx(tmp_path / "reader.pth", tmp_path / "reader.onnx")
    finder = tmp_path / "line_finder.pt"
    monkeypatch.setattr(htr.inference, "DEFAULT_LINE_FINDER", finder)
    options = {"decoder": "greedy", "onnx": tmp_path / "reader.onnx"}
    assert htr.inference.Recognizer(tmp_path / "reader.pth", **options).line_finder_path is None  # none: classical
    shutil.copy(Path(__file__).resolve().parents[1] / "line_finder.pt", finder)
    assert htr.inference.Recognizer(tmp_path / "reader.pth", **options).line_finder_path == finder  # in PyTorch
    export_line_finder(finder, tmp_path / "line_finder.onnx")
    monkeypatch.setattr("htr.cpu_share.usable_cores", lambda: 2)  # the reader reads 2 batches at once: a core each
    reader = htr.inference.Recognizer(tmp_path / "reader.pth", **options)
    assert reader.line_finder_path == tmp_path / "line_finder.onnx" and reader.line_finder().session is not None
    assert reader.network.parallel_calls == 2  # ... and pages are prepared 2 at once, so the finder takes one core
    assert reader.line_finder().session.get_session_options().intra_op_num_threads == 1
    state = torch.load(finder, weights_only=True)
    state["threshold"] = 0.4  # the finder changes after its export: the export is stale
    torch.save(state, finder)
    reader = htr.inference.Recognizer(tmp_path / "reader.pth", **options)
    assert reader.line_finder().session is None and reader.line_finder().threshold == 0.4
    assert reader.line_finder_path == finder


def test_composed_letters_hold_every_line_with_its_kernel(tmp_path):
    """--composed-letters: letter pages from a line dataset (body, corner, closing, printed letterhead lines), each
    line with a box and a kernel in the training target."""
    from htr.train_line_detector import composed_letters
    from tests.conftest import write_parquet_dataset

    dataset = write_parquet_dataset(tmp_path / "lines", n_train=16, n_val=2, n_test=2)
    pages = composed_letters([str(dataset)], 3, seed=0)
    assert [name for name, *_ in pages] == [f"{dataset}#letter{k}" for k in range(3)]
    for _, ink, target, boxes in pages:
        assert 5 <= len(boxes) <= 12 and ink.shape[0] // 2 == target.shape[0]
        for left, top, right, bottom in boxes:  # every line's kernel is in the target
            assert target[int(top) : int(bottom) + 1, int(left) : int(right) + 1].any()
