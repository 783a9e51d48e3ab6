"""The configuration-reference check fails on what it must find: a variable read, a secret, a parameter."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import check_config_reference as check  # noqa: E402


class ConfigReference(unittest.TestCase):
    def test_a_variable_read_in_the_code_must_be_documented(self):
        with tempfile.TemporaryDirectory() as source:
            with open(os.path.join(source, "config.rs"), "w", encoding="utf-8") as handle:
                handle.write(
                    'let a = config::required(lookup, "NEW_SETTING")?;\n'
                    'let b = optional(&lookup, "OTHER_SETTING");\n'
                    'pub const SECRET_VARS: [&str; 1] = ["A_SECRET"];\n'
                    '#[cfg(test)]\nmod tests { fn t() { required(lookup, "ONLY_IN_TESTS"); } }\n'
                )
            names = check.variables_read(source)
        self.assertEqual(set(names), {"NEW_SETTING", "OTHER_SETTING", "A_SECRET"})
        absent = check.missing("`NEW_SETTING` and `A_SECRET`", names)
        self.assertEqual([line.split(" ")[0] for line in absent], ["OTHER_SETTING"])

    def test_the_real_reference_covers_every_parameter_and_every_variable(self):
        names = {**check.template_names("infra/template.yaml"), **check.variables_read("shared/src")}
        self.assertIn("AddonId", names)
        self.assertIn("TABLE_NAME", names)
        self.assertIn("PROVISIONER_SIGNING_SECRET_PREVIOUS", names)
        with open("docs/operating.md", encoding="utf-8") as handle:
            reference = handle.read()
        self.assertEqual(check.missing(reference, names), [])
        self.assertNotEqual(check.missing(reference.replace("`AddonId`", "AddonId"), names), [])


if __name__ == "__main__":
    unittest.main()
