/** The renderer's entry: the Vue app with its Pinia stores, mounted on index.html's #app. */
import { createPinia } from 'pinia';
import { createApp } from 'vue';
import App from './App.vue';
import './tokens.css';
import './styles.css';

createApp(App).use(createPinia()).mount('#app');
