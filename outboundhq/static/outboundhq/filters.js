'use strict';
// A look-up filter applies as soon as a value is chosen (the admin's autocomplete widget fires
// a jQuery change event on its <select>).
window.addEventListener('load', function() {
    const $ = window.django && window.django.jQuery;
    if (!$) {
        return;
    }
    $('form.ohq-autosubmit select').on('change', function() {
        this.form.submit();
    });
});
