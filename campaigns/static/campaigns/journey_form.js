// The journey form shows only the chosen trigger's fields; a step form only the fields of what it
// checks or waits for. Without JavaScript every field shows, and the server checks them all.
(function () {
  "use strict";
  const TRIGGER_FIELDS = {
    event: ["trigger_event", "trigger_conditions", "trigger_max_age_seconds", "trigger_date_property",
            "trigger_date_offset_days", "trigger_date_time"],
    segment: ["trigger_segment"],
    segment_exit: ["trigger_segment"],
    date: ["trigger_date_attribute", "trigger_date_offset_days", "trigger_date_time"],
    api: [],
  };
  const ALL = Array.from(new Set(Object.values(TRIGGER_FIELDS).flat()));
  // Step forms: the field that chooses, and which fields each choice shows.
  const STEP_CHOICES = {
    check: {
      field: "check", fields: ["checked_step", "name", "operator", "value", "value_to", "answer_type", "within_days"],
      shows: {engaged: ["checked_step"], delivered: ["checked_step"], opened: ["checked_step"],
              clicked: ["checked_step"], replied: ["checked_step"], attribute: ["name", "operator", "value", "value_to"],
              event: ["name", "within_days"],
              webhook: ["checked_step", "name", "answer_type", "operator", "value", "value_to"]},
    },
    waits_for: {field: "waits_for", fields: ["event", "engagement", "send_step"],
                shows: {event: ["event"], engagement: ["engagement", "send_step"]}},
    source: {field: "source", fields: ["attribute", "property"], shows: {attribute: ["attribute"], property: ["property"]}},
    sets: {field: "sets", fields: ["attribute", "value", "lifecycle_stage"],
           shows: {attribute: ["attribute", "value"], lifecycle_stage: ["lifecycle_stage"]}},
  };

  function row(name) {
    const input = document.querySelector(`[name="${name}"], [name^="${name}_"], [name^="${name}-"]`);
    return input && (input.closest(".step-field") || input.closest(`.field-${name}`) ||
                     input.closest(".form-row") || input.closest("div.flex"));
  }

  function toggle(names, shown) {
    for (const name of names) {
      const element = row(name);
      if (element) element.hidden = !shown.includes(name);
    }
  }

  function journeyForm() {
    const select = document.querySelector("select[name=trigger_type]");
    if (!select) return;
    const update = () => toggle(ALL, TRIGGER_FIELDS[select.value] || ALL);
    select.addEventListener("change", update);
    update();
  }

  function stepForm() {
    const form = document.getElementById("step-form");
    if (!form) return;
    for (const choice of Object.values(STEP_CHOICES)) {
      const select = form.querySelector(`select[name=${choice.field}]`);
      if (!select) continue;
      const update = () => toggle(choice.fields, choice.shows[select.value] || choice.fields);
      select.addEventListener("change", update);
      update();
    }
    // A branch on an attribute offers the operators of its declared type (undeclared: text).
    const operator = form.querySelector("select[name=operator][data-operators-by-type]");
    const name = form.querySelector("input[name=name]");
    if (operator && name) {
      const types = JSON.parse(operator.dataset.attributeTypes);
      const byType = JSON.parse(operator.dataset.operatorsByType);
      const check = form.querySelector("select[name=check]");
      const filter = () => {
        const typed = check && check.value === "attribute";
        const allowed = byType[types[name.value] || "text"];
        for (const option of operator.options) {
          option.hidden = typed && option.value !== "" && !allowed.includes(option.value);
        }
      };
      name.addEventListener("input", filter);
      if (check) check.addEventListener("change", filter);
      filter();
    }
    const plan = form.querySelectorAll("input[name=plan]");
    const updatePlan = () => {
      const own = form.querySelector("input[name=plan]:checked");
      form.querySelectorAll(".step-field").forEach((element) => {
        if (/^(channel|fallback|within)_/.test(element.dataset.field)) element.hidden = own && own.value === "default";
      });
    };
    plan.forEach((input) => input.addEventListener("change", updatePlan));
    if (plan.length) updatePlan();
  }

  // Trigger conditions: the filled rows and one empty row show; "Add a condition" shows the next.
  function conditionRows() {
    document.querySelectorAll(".trigger-condition-rows").forEach((box) => {
      const rows = Array.from(box.querySelectorAll(".trigger-condition-row"));
      const empty = (element) => Array.from(element.querySelectorAll("input, select")).every((field) => !field.value);
      let shownEmpty = false;
      rows.forEach((element) => {
        if (empty(element)) {
          element.hidden = shownEmpty;
          shownEmpty = true;
        }
      });
      const add = document.createElement("button");
      add.type = "button";
      add.className = "add-condition text-primary-600 self-start";
      add.textContent = "Add a condition";
      const refresh = () => { add.hidden = !rows.some((element) => element.hidden); };
      add.addEventListener("click", () => {
        const next = rows.find((element) => element.hidden);
        if (next) {
          next.hidden = false;
          next.querySelector("input").focus();
        }
        refresh();
      });
      box.appendChild(add);
      refresh();
    });
  }

  document.addEventListener("DOMContentLoaded", () => { journeyForm(); stepForm(); conditionRows(); });
})();
