// The segment form: draws the definition held in the hidden "definition" input as groups of
// filters, writes it back on every change, and shows the live count under the form.
// Plain DOM, no library. The catalog (kinds, their fields, declared types, operators per type)
// comes from the page as JSON (contacts.segments.form_catalog).
(function () {
  "use strict";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function select(options, value, onChange, label) {
    var node = el("select", {"aria-label": label || "", className: "segment-input"});
    options.forEach(function (option) {
      var opt = el("option", {value: option[0], text: option[1]});
      if (String(option[0]) === String(value)) opt.selected = true;
      node.appendChild(opt);
    });
    node.addEventListener("change", function () { onChange(node.value); });
    return node;
  }

  function input(type, value, onChange, label) {
    var node = el("input", {type: type, "aria-label": label || "", className: "segment-input"});
    if (value !== undefined && value !== null) node.value = value;
    node.addEventListener("input", function () { onChange(node.value); });
    return node;
  }

  function Builder(root) {
    this.root = root;
    this.hidden = document.getElementById(root.dataset.input);
    this.catalog = JSON.parse(document.getElementById(root.dataset.catalog).textContent);
    this.kinds = {};
    var self = this;
    this.catalog.kinds.forEach(function (kind) { self.kinds[kind.name] = kind; });
    try {
      this.definition = JSON.parse(this.hidden.value || "{}") || {};
    } catch (e) {
      this.definition = {};
    }
    if (!this.definition.filters) this.definition = {match: "all", filters: []};
    this.count = document.getElementById(root.dataset.count);
    this.timer = null;
    this.asked = 0;
    this.draw();
    this.changed();
  }

  Builder.prototype.changed = function () {
    this.hidden.value = JSON.stringify(this.definition);
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.askCount(); }, 400);
  };

  Builder.prototype.redraw = function () { this.draw(); this.changed(); };

  Builder.prototype.draw = function () {
    this.root.innerHTML = "";
    this.root.appendChild(this.group(this.definition, null));
  };

  Builder.prototype.group = function (group, parent) {
    var self = this;
    var box = el("fieldset", {className: "segment-group" + (parent ? " segment-nested" : "")});
    var head = el("div", {className: "segment-head"}, [
      el("span", {text: "Contacts matching "}),
      select([["all", "all of"], ["any", "any of"]], group.match || "all", function (v) { group.match = v; self.changed(); },
             "match"),
      el("span", {text: " these filters"}),
    ]);
    if (parent) {
      var remove = el("button", {type: "button", className: "segment-remove", text: "Remove group"});
      remove.addEventListener("click", function () {
        parent.filters.splice(parent.filters.indexOf(group), 1); self.redraw();
      });
      head.appendChild(remove);
    }
    box.appendChild(head);
    group.filters.forEach(function (child) {
      box.appendChild(child.kind === undefined && child.filters ? self.group(child, group) : self.filter(child, group));
    });
    var kinds = [["", "Add a filter…"]].concat(this.catalog.kinds.map(function (k) { return [k.name, k.label]; }));
    var add = select(kinds, "", function (v) {
      if (v) { group.filters.push(self.blank(v)); self.redraw(); }
    }, "add a filter");
    var nest = el("button", {type: "button", className: "segment-add-group", text: "Add a group"});
    nest.addEventListener("click", function () { group.filters.push({match: "any", filters: []}); self.redraw(); });
    box.appendChild(el("div", {className: "segment-actions"}, [add, nest]));
    return box;
  };

  Builder.prototype.blank = function (kind) {
    var filter = {kind: kind};
    (this.kinds[kind] ? this.kinds[kind].fields : []).forEach(function (field) {
      if (field.input === "select" && field.required && field.choices.length) filter[field.name] = field.choices[0][0];
      if (field.name === "did") filter.did = true;
      if (field.input === "multiselect") filter[field.name] = [];
      if (field.input === "property_conditions") filter[field.name] = [];
    });
    if (kind === "engagement") filter.within_days = 30;
    return filter;
  };

  Builder.prototype.filter = function (filter, group) {
    var self = this;
    var kind = this.kinds[filter.kind];
    var row = el("div", {className: "segment-filter", "data-kind": filter.kind},
                 [el("strong", {text: (kind ? kind.label : filter.kind) + " "})]);
    (kind ? kind.fields : []).forEach(function (field) { row.appendChild(self.field(filter, field)); });
    var remove = el("button", {type: "button", className: "segment-remove", text: "Remove"});
    remove.addEventListener("click", function () { group.filters.splice(group.filters.indexOf(filter), 1); self.redraw(); });
    row.appendChild(remove);
    return row;
  };

  Builder.prototype.set = function (object, name, value) {
    if (value === "" || value === undefined) delete object[name]; else object[name] = value;
    this.changed();
  };

  Builder.prototype.field = function (filter, field) {
    var self = this;
    var label = el("span", {className: "segment-field"}, [el("span", {text: field.label + " "})]);
    var boolean = field.choices.length === 2 && field.choices[0][0] === "true";
    if (field.input === "select") {
      var value = filter[field.name] === undefined ? "" : String(filter[field.name]);
      var options = field.required ? field.choices : [["", "—"]].concat(field.choices);
      label.appendChild(select(options, value, function (v) {
        self.set(filter, field.name, boolean ? v === "true" : v);
      }, field.name));
    } else if (field.input === "multiselect") {
      var chosen = filter[field.name] || (filter[field.name] = []);
      field.choices.forEach(function (choice) {
        var box = el("input", {type: "checkbox", value: choice[0], "aria-label": choice[1]});
        box.checked = chosen.indexOf(choice[0]) >= 0;
        box.addEventListener("change", function () {
          var at = chosen.indexOf(choice[0]);
          if (box.checked && at < 0) chosen.push(choice[0]);
          if (!box.checked && at >= 0) chosen.splice(at, 1);
          self.changed();
        });
        label.appendChild(el("label", {className: "segment-choice"}, [box, el("span", {text: " " + choice[1] + " "})]));
      });
    } else if (field.input === "number") {
      label.appendChild(input("number", filter[field.name], function (v) {
        self.set(filter, field.name, v === "" ? "" : Number(v));
      }, field.name));
    } else if (field.input === "date" || field.input === "text") {
      var box = input(field.input, filter[field.name], function (v) { self.set(filter, field.name, v); }, field.name);
      // The event's declared properties type its conditions: draw them again for another event.
      if (field.name === "event") box.addEventListener("change", function () { self.redraw(); });
      label.appendChild(box);
    } else if (field.input === "attribute_condition") {
      return this.condition(filter, "attribute", this.catalog.attributes, function () { return true; });
    } else if (field.input === "property_conditions") {
      return this.propertyConditions(filter, field);
    }
    if (field.help) label.appendChild(el("small", {text: " " + field.help}));
    return label;
  };

  // A key (attribute or property), its operator and its values, typed by the declared types.
  Builder.prototype.condition = function (condition, keyName, types, redrawOwner) {
    var self = this;
    var box = el("span", {className: "segment-condition"});
    var listId = "segment-keys-" + keyName + "-" + Math.random().toString(36).slice(2);
    var keys = el("datalist", {id: listId});
    Object.keys(types).forEach(function (name) { keys.appendChild(el("option", {value: name})); });
    var type = types[condition[keyName]] || "text";
    var operators = this.catalog.operators[type];
    // Read when the marketer leaves the field: a key of another type redraws the operators.
    var keyInput = el("input", {type: "text", "aria-label": keyName, className: "segment-input"});
    if (condition[keyName] !== undefined) keyInput.value = condition[keyName];
    keyInput.addEventListener("change", function () {
      condition[keyName] = keyInput.value;
      var newType = types[keyInput.value] || "text";
      if (newType !== type) {
        condition.operator = self.catalog.operators[newType][0].name;
        delete condition.value; delete condition.value_to;
        self.redraw();
      } else self.changed();
    });
    keyInput.setAttribute("list", listId);
    box.appendChild(keys);
    box.appendChild(keyInput);
    box.appendChild(el("em", {text: " (" + type + ") "}));
    if (!operators.some(function (o) { return o.name === condition.operator; })) condition.operator = operators[0].name;
    var operator = operators.filter(function (o) { return o.name === condition.operator; })[0];
    box.appendChild(select(operators.map(function (o) { return [o.name, o.label]; }), condition.operator, function (v) {
      condition.operator = v; delete condition.value; delete condition.value_to; self.redraw();
    }, "operator"));
    var kind = type === "number" ? "number" : (type === "date" || (type === "datetime" && condition.operator === "on")) ? "date"
      : type === "datetime" ? "datetime-local" : "text";
    var typed = function (v) {
      if (v === "") return "";
      if (kind === "number") return Number(v);
      if (kind === "datetime-local") return v.length === 16 ? v + ":00Z" : v + "Z";
      return v;
    };
    var shown = function (v) {
      return kind === "datetime-local" && typeof v === "string" ? v.replace(/Z$/, "").slice(0, 19) : v;
    };
    if (operator.takes === "value" || operator.takes === "range") {
      box.appendChild(input(kind, shown(condition.value), function (v) { self.set(condition, "value", typed(v)); }, "value"));
    }
    if (operator.takes === "range") {
      box.appendChild(el("span", {text: " and "}));
      box.appendChild(input(kind, shown(condition.value_to), function (v) { self.set(condition, "value_to", typed(v)); },
                            "value_to"));
    }
    if (operator.takes === "days") {
      box.appendChild(input("number", condition.value, function (v) { self.set(condition, "value", v === "" ? "" : Number(v)); },
                            "days"));
      box.appendChild(el("span", {text: " days"}));
    }
    return box;
  };

  Builder.prototype.propertyConditions = function (filter, field) {
    var self = this;
    var conditions = filter[field.name] || (filter[field.name] = []);
    var box = el("div", {className: "segment-conditions"}, [el("span", {text: field.label + " "})]);
    var types = this.catalog.properties[filter.event] || {};
    conditions.forEach(function (condition) {
      var row = el("div", {className: "segment-property"}, [self.condition(condition, "property", types)]);
      var remove = el("button", {type: "button", className: "segment-remove", text: "Remove"});
      remove.addEventListener("click", function () { conditions.splice(conditions.indexOf(condition), 1); self.redraw(); });
      row.appendChild(remove);
      box.appendChild(row);
    });
    var add = el("button", {type: "button", className: "segment-add-condition", text: "Add a property condition"});
    add.addEventListener("click", function () { conditions.push({property: "", operator: "equals"}); self.redraw(); });
    box.appendChild(add);
    return box;
  };

  Builder.prototype.askCount = function () {
    var self = this;
    var asked = ++this.asked;
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    this.count.setAttribute("data-state", "counting");
    fetch(this.root.dataset.countUrl, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": token ? token.value : ""},
      body: JSON.stringify({definition: this.definition}),
    }).then(function (response) { return response.json(); }).then(function (answer) {
      if (asked === self.asked) self.showCount(answer);
    }).catch(function () {
      if (asked === self.asked) self.showCount({problems: ["The count could not be fetched."]});
    });
  };

  Builder.prototype.showCount = function (answer) {
    var box = this.count;
    box.innerHTML = "";
    if (answer.problems && answer.problems.length) {
      box.setAttribute("data-state", "invalid");
      var list = el("ul", {className: "errorlist"});
      answer.problems.forEach(function (p) { list.appendChild(el("li", {text: p})); });
      box.appendChild(list);
      return;
    }
    if (answer.too_slow) {
      box.setAttribute("data-state", "too-slow");
      box.appendChild(el("p", {className: "segment-count", text: "Too slow to count right now."}));
      return;
    }
    box.setAttribute("data-state", "counted");
    box.appendChild(el("p", {className: "segment-count",
                             text: answer.count + (answer.count === 1 ? " contact matches" : " contacts match")}));
    if (answer.sample && answer.sample.length) {
      var list = el("ul", {className: "segment-sample"});
      answer.sample.forEach(function (contact) {
        list.appendChild(el("li", {}, [el("a", {href: contact.url, text: contact.name})]));
      });
      box.appendChild(el("p", {text: "For example:"}));
      box.appendChild(list);
    }
  };

  function start() {
    document.querySelectorAll("[data-segment-builder]").forEach(function (root) { new Builder(root); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
