"""The data pipeline: MNIST and Fashion-MNIST downloaded and cached, IDX files, folders of images
and pictures, augmentation, and the splits and batches every framework trains on."""
