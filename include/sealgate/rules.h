/* Evaluating the policy's rules: what the conditions look at (the facts),
 * whether a rule matches a recipient, and which decision applies. */
#ifndef SEALGATE_RULES_H
#define SEALGATE_RULES_H

#include <stdbool.h>

#include <glib.h>

#include "sealgate/header.h"
#include "sealgate/msg.h"
#include "sealgate/policy.h"

/* What conditions are evaluated against. Without content (at RCPT time,
 * or `policy explain` without a message) content conditions never match. */
struct sg_facts {
	const char *sender;
	bool have_content;
	const struct sg_msg *msg;  /* header fields, for header conditions */
	char *subject;             /* unfolded, RFC 2047 decoded; NULL: none */
	GPtrArray *labels;         /* char *: MIP label names */
	long long size;
};

/* Envelope-only facts. */
void sg_facts_init(struct sg_facts *f, const char *sender);
/* Facts including the message content. */
void sg_facts_from_msg(struct sg_facts *f, const struct sg_msg *msg);
void sg_facts_clear(struct sg_facts *f);

/* Address or domain glob: a pattern with '@' matches the whole address,
 * one without matches its domain; '*' and '?' are wildcards, and
 * "*.example.com" matches the subdomains of example.com. Case-insensitive. */
bool sg_glob_match(const char *pattern, const char *addr);

/* True when the rule has no condition that needs the message content. */
bool sg_rule_envelope_only(const struct sg_rule *rule);

/* Whether rule matches for recipient rcpt. When why is not NULL and it
 * does not match, why receives the first condition that failed. */
bool sg_rule_matches(const struct sg_rule *rule, const struct sg_facts *f,
		     const char *rcpt, GString *why);

/* The decision for rcpt: the first rule that matches, else the default. */
void sg_policy_decide(const struct sg_policy *pol, const struct sg_facts *f,
		      const char *rcpt, struct sg_decision *out);

/* The methods that apply to rcpt as far as the envelope tells: those of the
 * first matching rule without content conditions, else the default's. */
const struct sg_methods *sg_policy_envelope_methods(const struct sg_policy *pol,
						    const char *sender,
						    const char *rcpt);

#endif
