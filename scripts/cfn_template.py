"""Reads infra/template.yaml, treating CloudFormation's short-form tags (!Ref, !Sub, …) as plain values."""

import yaml


class _CloudFormationLoader(yaml.SafeLoader):
    pass


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_CloudFormationLoader.add_multi_constructor("!", _any_tag)


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CloudFormationLoader)
