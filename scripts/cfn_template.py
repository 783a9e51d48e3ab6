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
        return loads(handle.read())


def loads(text: str) -> dict:
    """`load`, from the template's text (an earlier release's, from git)."""
    return yaml.load(text, Loader=_CloudFormationLoader)


class _LongFormLoader(yaml.SafeLoader):
    pass


# Short-form tag -> long form: `!Ref X` is {"Ref": X}, `!GetAtt A.B` is {"Fn::GetAtt": [A, B]},
# `!If [...]` is {"Fn::If": [...]}, and so on, so that an intrinsic is never taken for a value.
def _long_form(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_LongFormLoader.add_multi_constructor("!", _long_form)


def load_long_form(path: str) -> dict:
    """The template with every intrinsic function in its long form (a one-key mapping), as
    CloudFormation reads it: scripts/local_triggers.py resolves them against parameter values."""
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_LongFormLoader)
