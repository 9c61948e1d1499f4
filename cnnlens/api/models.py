"""The bodies of the REST API v1 as pydantic v2 models: what the service returns (its
`response_model`s, so the OpenAPI schema is what is sent) and what the client parses.

The models forbid unknown fields, so the service cannot send a field its schema lacks; the
client parses with `parse(Model, body)` (extra="ignore"), so a newer server's additions never
break an older client."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: Any) -> M:
    """A received body as `model`, ignoring fields this version does not know."""
    return model.model_validate(body, extra="ignore")


class ErrorDetail(Schema):
    code: str = Field(description="stable machine-readable code, e.g. unknown_layer")
    message: str


class ErrorBody(Schema):
    error: ErrorDetail


class Health(Schema):
    status: str
    ready: bool
    models: dict[str, str] = Field(description="model name -> loading | ready | failed")
    detail: str | None = None


class ClassScore(Schema):
    index: int
    label: str
    probability: float
    pixel_share: float | None = Field(
        default=None,
        description="segmentation models: the fraction of pixels predicted as this class "
        "(probability is then the class's mean per-pixel probability)",
    )


class ImageSize(Schema):
    width: int
    height: int


class ArrayPayload(Schema):
    dtype: str = Field(description="numpy dtype name; the bytes are little-endian")
    shape: list[int]
    data: str = Field(description="base64 of the array's raw little-endian bytes (C order)")


class ExplanationBody(Schema):
    method: str
    target: ClassScore | None
    layer: str | None
    width: int
    height: int
    heatmap_png: str | None = Field(
        default=None,
        description="base64 palette PNG at the image's size (an RGB PNG where pixels are not "
        "explained)",
    )
    overlay_png: str | None = Field(
        default=None,
        description="base64 image in the answer's overlay_format at the image's size",
    )
    array: ArrayPayload | None = None
    elapsed_ms: float
    explained_box: list[int] | None = Field(
        default=None,
        description="[x0, y0, x1, y1] of the image the map explains (x1, y1 exclusive); "
        "outside it (a center-cropped model's border) the array is NaN",
    )


class ExplainResponse(Schema):
    model: str
    image: ImageSize
    predictions: list[ClassScore] = Field(
        description="top-5; segmentation models: the classes present, by pixel share"
    )
    explanations: list[ExplanationBody]
    elapsed_ms: float
    was_training: bool = Field(
        default=False, description="the model was handed over in train mode (explained in eval)"
    )
    overlay_format: str = Field(
        default="png",
        description="the format of every overlay_png: png, jpeg or webp; unless the request's "
        "overlay_format chose, the upload's (jpeg for a JPEG, webp for a lossy WebP, else png)",
    )


class LayerBody(Schema):
    name: str
    type: str
    output_shape: list[int] | None
    receptive_field: int | None = Field(description="pixels; null = the whole image")
    stride: int | None = Field(description="input pixels between neighbouring outputs")
    calls: int


class CompatibilityBody(Schema):
    relu_modules: int
    inplace_relu_modules: int
    relu6_modules: int
    functional_relu_calls: int
    unsupported_activations: list[str]
    guided_methods: bool
    gap_linear_head: bool
    classifier: str | None
    notes: list[str]


class PreprocessingBody(Schema):
    input_size: list[int] = Field(description="[height, width]")
    mean: list[float]
    std: list[float]
    interpolation: str
    resize: str = Field(default="whole", description="whole, or shorter-side + center-crop")
    channels: int = Field(default=3, description="3 (RGB) or 1 (grayscale)")
    resize_size: int | None = Field(
        default=None, description="center crop: the shorter side's size before the crop"
    )


class ModelSummary(Schema):
    name: str
    default: bool
    input_size: list[int] = Field(description="[height, width]")
    num_classes: int
    default_layer: str
    weights_source: str
    weights_sha256: str | None


class ModelList(Schema):
    default: str
    models: list[ModelSummary]


class BudgetBody(Schema):
    """What one request may use on this model; over it: 422 over_budget, before any work."""

    forward_passes: float = Field(description="forward-equivalents per request")
    memory_bytes: int = Field(description="estimated peak bytes per request")
    forward_ms: float = Field(description="measured forward time per image at the input size")
    backward_ms: float = Field(description="measured backward time per image to the input")
    device: str
    source: str = Field(
        description="calibrated: from the deadline at the measured speed; configured: "
        "limits.budget_forward_passes"
    )


class ModelDetail(ModelSummary):
    budget: BudgetBody | None = Field(default=None, description="the per-request budget")
    labels_count: int = Field(description="how many class labels the model has")
    head: str = Field(description="softmax, sigmoid, binary or segmentation")
    was_training: bool = Field(description="handed over in train mode (explained in eval)")
    preprocessing: PreprocessingBody
    layers: list[LayerBody]
    compatibility: CompatibilityBody
    categories: list[str] = Field(description="class names by index")


class MethodInfo(Schema):
    name: str
    title: str
    paper: str
    kind: str = Field(description="the view its results take: map, image, activation or weights")
    execution: str = Field(description="gradient (shares one pass) or standalone")
    produces: str = Field(description="map, image, activations or weights")
    uses_layer: bool
    uses_target: bool
    uses_image: bool = Field(default=True, description="whether its route takes an image upload")
    segmentation: bool = Field(
        default=True,
        description="whether it explains a segmentation model (a class over a region); "
        "false: it reads (B, K) class logits",
    )
    route: str = Field(description="the route answering this method's own results")
    params: dict[str, Any] = Field(description="JSON schema of the method's params")


class MethodList(Schema):
    methods: list[MethodInfo]


class MethodAnswer(Schema):
    """What the answer of every method's own route carries."""

    model: str = Field(description="the model that ran")
    elapsed_ms: float = Field(description="time spent on the request, in milliseconds")


class AdversarialResponse(MethodAnswer):
    image: ImageSize
    target: ClassScore = Field(description="the class explained / pushed away from")
    original: ClassScore = Field(description="top-1 on the original image")
    adversarial: ClassScore = Field(
        description="top-1 on adversarial_png, decoded and preprocessed again as an upload"
    )
    adversarial_target: ClassScore | None = Field(
        default=None, description="the class a targeted attack aims for, with its new probability"
    )
    target_after: ClassScore = Field(description="the explained class on adversarial_png")
    success: bool = Field(description="false: the saved image does not fool the model")
    output_size: str = Field(
        description='"image": the upload\'s size; "model": the model\'s input size. The '
        "perturbation is optimized at this size, through the resize an upload goes through"
    )
    output: ImageSize = Field(description="the size of adversarial_png")
    epsilon: float = Field(description="the requested budget, 0-255 units (>= 1)")
    epsilon_levels: int = Field(description="floor(epsilon): whole 8-bit levels a pixel may move")
    linf: float = Field(description="largest pixel change of adversarial_png, 0-255 units")
    adversarial_png: str = Field(description="base64 PNG at output_size (default the upload's)")
    perturbation_png: str = Field(description="base64 PNG: the perturbation, amplified")


class ActivationMaxResponse(MethodAnswer):
    target: ClassScore | None = Field(description="the class maximized, or null for a channel")
    layer: str | None
    channel: int | None
    score: float = Field(description="the objective on the returned image")
    top1: ClassScore = Field(description="what the model predicts for the returned image")
    image_png: str = Field(description="base64 PNG at the model's input size")


class MethodResponse(MethodAnswer):
    """The body of a method's own route when the method declares no body of its own."""

    method: str
    image: ImageSize | None = Field(default=None, description="the upload's size, if any")
    layer: str
    target: ClassScore | None = Field(description="the class explained, if the method has one")
    shape: list[int] = Field(description="the raw result's shape, without the batch")
    image_png: str = Field(description="base64 PNG: the result as an image")


class ChannelScore(Schema):
    channel: int
    mean: float
    max: float


class FeatureMapsResponse(MethodAnswer):
    image: ImageSize
    layer: str
    shape: list[int] = Field(description="the layer's output (C, h, w)")
    top_channels: list[ChannelScore]
    grid_png: str = Field(description="base64 PNG: the top channels' maps side by side")


class FiltersResponse(MethodAnswer):
    layer: str
    shape: list[int] = Field(description="the weight tensor's shape")
    channels: list[int] = Field(description="which output channels the tiles show")
    tiles_png: str = Field(description="base64 PNG: one tile per filter")


class AgreementBody(Schema):
    methods: list[str] = Field(description="the two methods compared")
    spearman: float | None = Field(description="rank correlation of the maps over all pixels")
    top_k_iou: float | None = Field(description="IoU of the two maps' top-k% pixels")


class CurvesBody(Schema):
    fractions: list[float | None] = Field(description="share of pixels perturbed at each step")
    deletion: list[float | None] | None
    insertion: list[float | None] | None


class RandomizationBody(Schema):
    stages: list[str] = Field(description="blocks randomized, cumulatively, top first")
    similarity: dict[str, list[float | None]] = Field(description="Spearman of |map| per stage")
    ssim: dict[str, list[float | None]] | None


class ImageCompareBody(Schema):
    name: str
    width: int
    height: int
    target: ClassScore
    predictions: list[ClassScore] = Field(
        description="top-5; segmentation models: the classes present, by pixel share"
    )
    layer: str
    region: list[float] | None = Field(
        default=None,
        description="segmentation models: the box x0,y0,x1,y1 (image pixels) the target's "
        "score is taken over; null: the pixels predicted as the target",
    )
    agreement: list[AgreementBody]
    scores: dict[str, dict[str, float | None]] = Field(
        description="method -> score, named as the `scores` option: deletion (AUC, lower: "
        "more faithful), insertion (AUC, higher), randomization (Spearman similarity, lower: "
        "passes the sanity check), randomization_ssim, infidelity (lower), sensitivity_max "
        "(lower), road (higher), sparseness (higher), complexity (lower); the former names "
        "deletion_auc, insertion_auc and randomization_similarity are sent too, for one release"
    )
    curves: dict[str, CurvesBody]
    randomization: RandomizationBody | None
    elapsed_ms: float


class KernelBody(Schema):
    size: int = Field(description="kernel width and height, pixels")
    sigma: float
    padding: str = Field(description="zeros (the RISE authors') or reflect")


class InfidelityProtocol(Schema):
    n_perturb_samples: int
    noise: float = Field(description="standard deviation of the Gaussian perturbation")
    normalization: str = Field(description="max: maps divided by their largest |value|")


class SensitivityProtocol(Schema):
    n_perturb_samples: int
    radius: float = Field(description="perturbations uniform in [-radius, radius]")
    norm: str
    normalization: str


class RoadProtocol(Schema):
    percentiles: list[int]
    imputer: str
    noise: float


class ProtocolBody(Schema):
    """How the scores were taken: enough to reproduce them and to set them beside others."""

    baseline: str = Field(description="rise (the RISE authors' protocol), mean or blur")
    deletion: str = Field(description="what deleted pixels become: zeros, rise_blur or blur")
    insertion: str = Field(description="what insertion starts from: zeros, rise_blur or blur")
    kernel: KernelBody | None = Field(description="the blur's kernel; null without a blur")
    steps: int
    points: int = Field(description="points of each curve: steps + 1")
    probability: str
    auc: str
    ties: str
    seed: int
    infidelity: InfidelityProtocol | None = None
    sensitivity_max: SensitivityProtocol | None = None
    road: RoadProtocol | None = None


class StatBody(Schema):
    mean: float | None
    std: float | None
    n: int


class CompareResponse(Schema):
    model: str
    methods: list[str]
    options: dict[str, Any]
    protocol: ProtocolBody
    images: list[ImageCompareBody]
    summary: dict[str, dict[str, StatBody]] = Field(description="method -> score -> mean ± std")
    grid_png: str = Field(description="base64 PNG: a row per image, a column per method")
    elapsed_ms: float


class AuditProgress(Schema):
    done: int
    total: int
    errors: int = Field(description="images that could not be read")
    fraction: float


class AuditLinks(Schema):
    self: str
    results: str
    report: str
    neighbors: str | None = Field(
        default=None, description="POST an image: the audited images nearest to it"
    )


class AuditJob(Schema):
    id: str
    status: str = Field(description="queued, running, done, failed or cancelled")
    created: float
    updated: float
    finished: float | None
    model: str | None
    methods: list[str] | None
    progress: AuditProgress
    eta_s: float | None = Field(description="remaining seconds at this run's pace")
    message: str | None
    links: AuditLinks


class AuditDeleted(Schema):
    """DELETE of a finished job: it and its files are gone."""

    id: str
    status: str = Field(description="what the job was: done, failed or cancelled")
    deleted: bool = Field(description="always true: a later GET is a 404")


class AuditList(Schema):
    audits: list[AuditJob] = Field(description="newest first; only the API key's own jobs")
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next page; null on the last page"
    )


class AuditResults(Schema):
    job: AuditJob
    summary: dict[str, Any] = Field(description="over every finished image: accuracy, flags...")
    results: list[dict[str, Any]] = Field(description="per-image records, in input order")


# The bodies of the methods whose own routes answer with a body of their own; any other
# method's route answers a MethodResponse (service and client read this one table).
METHOD_RESPONSES: dict[str, type[MethodAnswer]] = {
    "adversarial": AdversarialResponse,
    "activation_max": ActivationMaxResponse,
    "feature_maps": FeatureMapsResponse,
    "filters": FiltersResponse,
}


def method_response(name: str) -> type[MethodAnswer]:
    """The body of method `name`'s own route."""
    return METHOD_RESPONSES.get(name, MethodResponse)


def method_route(name: str) -> str:
    """The path of a method's own route: /v1/<name with - for _>."""
    return "/v1/" + name.replace("_", "-")


class Neighbour(Schema):
    name: str | None = Field(description="the audited image's name")
    index: int = Field(description="its index in the audit")
    distance: float = Field(description="1 - cosine similarity of the feature vectors")
    label_name: str | None = Field(description="its label, where the audit had labels")
    predicted_name: str | None = Field(description="the model's top-1 class for it")


class NeighboursResponse(Schema):
    neighbors: list[Neighbour] = Field(description="the nearest audited images, nearest first")


class Exemplar(Schema):
    name: str = Field(description="the audited image's name")
    index: int = Field(description="its index in the audit")
    activation: float = Field(description="the channel's largest activation in the image")
    box: list[int] = Field(description="[x0, y0, x1, y1]: that unit's receptive field, pixels")


class Exemplars(RootModel[dict[str, dict[str, list[Exemplar]]]]):
    """{layer: {channel: [Exemplar, ...]}}, best first."""
