"""Data: folders, crop pipelines, augmentation, weight and density maps, synthetic images, label noise."""

from kfcn.data.augment import PairedAugmenter, elastic_deformation
from kfcn.data.crops import ResumeCropStream, random_crop_pipeline
from kfcn.data.degrade import degrade
from kfcn.data.density import density_map, dots_from_image
from kfcn.data.ellipses import three_class_labels, touching_ellipses
from kfcn.data.folder import folder_dataset, load_pair, pair_files
from kfcn.data.io import read_image
from kfcn.data.label_noise import perturb_contours
from kfcn.data.samples import isbi2012_dir, shipped_model_path
from kfcn.data.sersic import bulge_disk_galaxy, sersic_b, sersic_image
from kfcn.data.weight_map import unet_weight_map

__all__ = [
    "PairedAugmenter",
    "ResumeCropStream",
    "bulge_disk_galaxy",
    "degrade",
    "density_map",
    "dots_from_image",
    "elastic_deformation",
    "folder_dataset",
    "isbi2012_dir",
    "load_pair",
    "pair_files",
    "perturb_contours",
    "random_crop_pipeline",
    "read_image",
    "sersic_b",
    "sersic_image",
    "shipped_model_path",
    "three_class_labels",
    "touching_ellipses",
    "unet_weight_map",
]
